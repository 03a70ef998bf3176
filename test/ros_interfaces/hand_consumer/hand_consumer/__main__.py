from pathlib import Path

import hamer_ros_msgs
from hamer_ros_msgs.msg import Hand, HandArray

msg = HandArray(hands=[Hand(side=Hand.LEFT), Hand(side=Hand.RIGHT)])
# The prefix hamer_ros_msgs came from: <prefix>/lib/python3.X/site-packages/hamer_ros_msgs
print(len(msg.hands), "hands", Path(hamer_ros_msgs.__file__).parents[4])
