"""`yolo-accel optimize`: the fastest configuration that passes the gates on this machine."""
