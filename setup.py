"""pip install of the ROS-free core (model, perception, CLI). The ROS 2 build uses CMakeLists.txt."""
from setuptools import find_packages, setup

setup(
    name="hamer_ros",
    version="0.1.0",
    description="HaMeR 3D hand meshes from a camera stream, for ROS 2 and offline use",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["hamer_ros", "hamer_ros.*"]),
    # MediaPipe's hand models, converted (Apache-2.0: NOTICE.md goes with them)
    package_data={"hamer_ros.perception.hand_models": ["*.npz", "NOTICE.md"],
                  # hamer_ros_msgs' definitions (a link to ros2/hamer_ros_msgs/msg), for `hamer-ros bag`
                  "hamer_ros.bag": ["definitions/*.msg"]},
    install_requires=[
        "torch>=2.1",           # the network; never pinned here so a CUDA/Jetson build is kept
        "numpy>=1.24",
        "scipy>=1.10",          # MANO's sparse J_regressor; robust least squares
        "smplx>=0.1.28",        # MANO linear blend skinning, as the reference uses it
        "opencv-python-headless>=4.8",  # crop warps, undistortion, overlays, video I/O
        "pyyaml>=6",            # model_config.yaml next to the checkpoint
        "tqdm>=4.60",           # CLI progress bars
    ],
    extras_require={
        # Not needed to run: the hand models ship converted (hamer_ros/perception/hand_models). For
        # the parity tests against MediaPipe's own graph and to regenerate the weights; 0.10.x has
        # the models and the `solutions` API (1.x neither). It pins numpy<2 and protobuf<5.
        "mediapipe": ["mediapipe>=0.10.18,<0.10.22"],
        "onnx": ["onnx>=1.15", "onnxruntime>=1.17", "onnxscript>=0.2"],  # onnxscript: torch.onnx's exporter
        # Torch-TensorRT is not an extra: each release pins one torch release, and resolving it
        # here would replace a CUDA/Jetson torch. scripts/bootstrap.sh installs the matching one.
        # `hamer-ros bag`: rosbag2 recordings read without ROS (rosbags: MCAP and sqlite3, CDR, message
        # definitions) and the annotations written as MCAP (mcap: the format's reference library)
        "bag": ["rosbags>=0.10.4", "mcap>=1.1"],
        "ray": ["ray>=2.10"],          # `hamer-ros bag --ray`: windows spread over a cluster
        "test": ["pytest>=7", "pytest-timeout>=2", "vermin>=1.6"],   # vermin: the Python 3.10 check
    },
    entry_points={"console_scripts": ["hamer-ros=hamer_ros.cli:main"]},
)
