"""run.json says what on the device shaped the numbers: the GPU, CUDA/cuDNN and the fp32 math PyTorch was set to
(TF32 convolutions are PyTorch's default on Ampere and newer; a process may also allow TF32 matmuls)."""

import torch

from evalsuite.runner import _versions, device_details


def test_a_cuda_run_records_the_gpu_and_its_fp32_math(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H100 80GB HBM3")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    monkeypatch.setattr(torch.backends.cudnn, "version", lambda: 91000)
    details = device_details(torch.device("cuda", 0))
    assert details["gpu"] == "NVIDIA H100 80GB HBM3" and details["capability"] == "9.0"
    assert details["cuda"] == torch.version.cuda and details["cudnn"] == 91000
    assert details["fp32_math"] == {"cudnn_conv": "tf32", "cuda_matmul": "ieee"}  # PyTorch's defaults
    before = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("high")  # what a training script often sets
        assert device_details(torch.device("cuda", 0))["fp32_math"]["cuda_matmul"] == "tf32"
    finally:
        torch.set_float32_matmul_precision(before)


def test_a_cpu_run_records_no_gpu_details_and_the_decoder_libraries():
    assert device_details(torch.device("cpu")) == {}
    assert {"av", "pillow", "torch", "open_clip_torch"} <= set(_versions())
