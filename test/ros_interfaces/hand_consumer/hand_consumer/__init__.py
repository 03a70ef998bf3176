"""Test only: what a robot-side consumer of hamer_ros does with a HandArray."""
