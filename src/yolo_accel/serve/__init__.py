"""`yolo-accel serve`: the traffic-monitoring web app (FastAPI) over the video engine, with its database."""
