"""Compile a tiny conv model into an AOTInductor package (seconds, not the 100 s of YOLOv8n)."""

import sys

import torch

dev, out = sys.argv[1], sys.argv[2]
m = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.SiLU()).to(dev).eval()
ep = torch.export.export(m, (torch.randn(1, 3, 32, 32, device=dev),))
print("packaged", torch._inductor.aoti_compile_and_package(ep, package_path=out), flush=True)
