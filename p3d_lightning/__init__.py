"""p3d-lightning: Pseudo-3D Residual Networks (Qiu, Yao, Mei, ICCV 2017) in PyTorch Lightning."""

__version__ = "0.1.0"
