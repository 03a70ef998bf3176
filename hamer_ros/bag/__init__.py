"""`hamer-ros bag`: rosbag2 recordings annotated with hands, without a ROS install.

recording.py reads MCAP and sqlite3 bags; job.py runs the pipeline over a recording's time
windows; output.py writes ROS 2 messages into MCAP; run.py is the job: windows here or on Ray,
resumption, the merge into one file. Needs the `bag` extra (rosbags, mcap); Ray the `ray` extra.
"""
