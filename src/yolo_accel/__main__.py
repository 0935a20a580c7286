"""`python -m yolo_accel` = the `yolo-accel` command."""

from .cli import main

main()
