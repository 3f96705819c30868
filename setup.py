"""pip install of the core library (model, geometry, streaming, offline tools).

The ROS 2 package itself is built by colcon from CMakeLists.txt (build type
ament_cmake); this file only serves `pip install .` on machines without ROS,
where `da3_ros.ros` is present but never imported by the core.
"""

from setuptools import find_packages, setup

setup(
    name="da3_ros",
    version="0.1.0",
    description="Streaming Depth Anything 3: depth, point clouds and camera poses from a camera stream",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["da3_ros", "da3_ros.*"]),
    package_data={"da3_ros": ["**/*.json", "**/*.safetensors", "**/*.md"]},
    install_requires=[
        "numpy>=1.24",
        "scipy>=1.10",
        "torch>=2.1",
        "safetensors>=0.4",
        "huggingface_hub>=0.20",
        "pillow>=9.0",
        "rosbags>=0.9.20",
        "transforms3d>=0.4.1",
        "PyYAML>=5.4",
    ],
    extras_require={"video": ["av>=10"], "test": ["pytest", "evo"]},
    entry_points={"console_scripts": ["da3_ros=da3_ros.cli:main"]},
)
