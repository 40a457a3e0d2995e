"""NVlabs stylegan2-ada-pytorch timed in the same run as ours (``tools/device_check.py --nvlabs DIR``).

Imports ``training.networks`` and ``training.loss`` from the user's checkout ``DIR`` (nothing of
it is copied here) and times, with torch on CUDA when available (else CPU, float32 only):

- G inference (``noise_mode='const'``) and D inference at the same batches as ours;
- one training iteration at the training batch, as ``training/training_loop.py`` runs it
  (phases Gmain, Greg every 4, Dmain, Dreg every 16 with lazy-regularisation Adam, then the
  G_ema update), amortised like ours; no augmentation.

Modes: ``fp32`` (NVlabs ``--fp32``: ``num_fp16_res=0``, ``conv_clamp=None``) and ``fp16``
(NVlabs' default mixed mode: float16 in the 4 highest resolutions, ``conv_clamp=256``).
Configs mirror ours: paper256 (``channel_base=16384``, 8 mapping layers, minibatch-std group 8)
or, with ``--tiny``, tiny16. Random weights; only speed and memory are reported (peak from
``torch.cuda.max_memory_allocated`` after resetting it per figure).
"""

from __future__ import annotations

import copy
import statistics
import sys
import time
from typing import Any


def _configs(tiny: bool, fp16: bool) -> tuple[dict, dict, dict]:
    clamp, nfp16 = (256, 4) if fp16 else (None, 0)
    if tiny:
        res, zdim, base, cmax, nmap, mbstd = 16, 32, 512, 32, 2, 4
    else:
        res, zdim, base, cmax, nmap, mbstd = 256, 512, 16384, 512, 8, 8
    g = dict(z_dim=zdim, c_dim=0, w_dim=zdim, img_resolution=res, img_channels=3,
             mapping_kwargs=dict(num_layers=nmap),
             synthesis_kwargs=dict(channel_base=base, channel_max=cmax, num_fp16_res=nfp16, conv_clamp=clamp))
    d = dict(c_dim=0, img_resolution=res, img_channels=3, channel_base=base, channel_max=cmax, num_fp16_res=nfp16,
             conv_clamp=clamp, epilogue_kwargs=dict(mbstd_group_size=mbstd))
    train = dict(lr=0.0025, r1_gamma=1.0, pl_weight=2.0, r1_interval=16, pl_interval=4, ema_kimg=20.0)
    return g, d, train


def _timer(torch, device):
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def time_calls(call, min_time: float, max_iters: int, min_iters: int = 3) -> float:
        call()
        sync()
        times = []
        t_all = time.perf_counter()
        while len(times) < min_iters or (time.perf_counter() - t_all < min_time and len(times) < max_iters):
            t0 = time.perf_counter()
            call()
            sync()
            times.append(time.perf_counter() - t0)
        return statistics.median(times)
    return time_calls


def _peak(torch, device) -> float | None:
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2 ** 30


def _reset(torch, device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def run(nvlabs_dir: str, tiny: bool, budget_s: float, min_time: float, max_iters: int) -> list[dict[str, Any]]:
    """The NVlabs figures (a list of records like ours; errors and skips recorded, not raised)."""
    t_start = time.time()
    out: list[dict[str, Any]] = []
    try:
        import numpy as np
        import torch
        if nvlabs_dir not in sys.path:
            sys.path.insert(0, nvlabs_dir)
        from training.loss import StyleGAN2Loss  # noqa: F401  (NVlabs checkout)
        from training.networks import Discriminator, Generator
    except Exception as e:  # noqa: BLE001
        return [{"label": "import", "error": f"{type(e).__name__}: {e}"}]
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    time_calls = _timer(torch, device)
    batches = (1, 4, 8) if tiny else (1, 32, 128)
    train_batch = 8 if tiny else 32
    modes = ("fp16", "fp32") if device.type == "cuda" else ("fp32",)  # fp16: NVlabs' default
    torch.backends.cudnn.benchmark = True  # as NVlabs' training loop
    torch.backends.cuda.matmul.allow_tf32 = False  # NVlabs' training loop disables TF32
    torch.backends.cudnn.allow_tf32 = False
    print(f"# NVlabs stylegan2-ada-pytorch from {nvlabs_dir}: torch {torch.__version__} on {device}", flush=True)

    def over_budget(label):
        if time.time() - t_start > budget_s:
            out.append({"label": label, "skipped": "time budget reached"})
            return True
        return False

    def record(name, batch, mode, sec, extra=None):
        rec = {"name": name, "batch": batch, "compute": "float16" if mode == "fp16" else "float32",
               "sec_per_call": sec, "img_per_s": batch / sec, "device_peak_gib": _peak(torch, device),
               "torch": torch.__version__, "device": str(torch.cuda.get_device_name(device)
                                                         if device.type == "cuda" else "cpu")}
        rec.update(extra or {})
        print(f"NVlabs {name:26s} b{batch:<4d} {mode}  {rec['img_per_s']:10.1f} img/s", flush=True)
        return rec

    for mode in modes:
        g_kw, d_kw, tr = _configs(tiny, mode == "fp16")
        res = g_kw["img_resolution"]
        try:
            G = Generator(**g_kw).to(device).eval().requires_grad_(False)
            D = Discriminator(**d_kw).to(device).eval().requires_grad_(False)
        except Exception as e:  # noqa: BLE001
            out.append({"label": f"build {mode}", "error": f"{type(e).__name__}: {e}"[:500]})
            continue
        mid = batches[1]
        order = [("G", mid), ("D", mid), ("train", train_batch)] + [(w, bs) for bs in batches if bs != mid
                                                                    for w in ("G", "D")]
        for what, bs in order:
            if what == "train":
                label = f"training b{train_batch} {mode}"
                if over_budget(label):
                    continue
                try:
                    _reset(torch, device)
                    out.append({**_train_iteration(torch, np, device, Generator, Discriminator, g_kw, d_kw, tr,
                                                   train_batch, time_calls, min_time, max_iters, record, mode, tiny),
                                "label": label})
                except Exception as e:  # noqa: BLE001
                    out.append({"label": label, "error": f"{type(e).__name__}: {e}"[:500]})
                continue
            label = f"{what} b{bs} {mode}"
            if over_budget(label):
                continue
            try:
                _reset(torch, device)
                c = torch.zeros([bs, 0], device=device)
                if what == "G":
                    z = torch.randn([bs, g_kw["z_dim"]], device=device)
                    call = lambda: G(z, c, noise_mode="const")  # noqa: E731
                else:
                    x = torch.rand([bs, 3, res, res], device=device) * 2 - 1
                    call = lambda: D(x, c)  # noqa: E731
                with torch.no_grad():
                    sec = time_calls(call, min_time, max_iters)
                out.append({**record(f"{'paper256' if not tiny else 'tiny16'} {what} inference", bs, mode, sec),
                            "label": label})
            except Exception as e:  # noqa: BLE001
                out.append({"label": label, "error": f"{type(e).__name__}: {e}"[:500]})
    return out


def _train_iteration(torch, np, device, Generator, Discriminator, g_kw, d_kw, tr, batch, time_calls, min_time,
                     max_iters, record, mode, tiny):
    """Per-phase times of NVlabs' training loop (its phase/optimiser set-up, no augmentation)."""
    from training.loss import StyleGAN2Loss

    G = Generator(**g_kw).train().requires_grad_(False).to(device)
    D = Discriminator(**d_kw).train().requires_grad_(False).to(device)
    G_ema = copy.deepcopy(G).eval()
    loss = StyleGAN2Loss(device=device, G_mapping=G.mapping, G_synthesis=G.synthesis, D=D, style_mixing_prob=0.9,
                         r1_gamma=tr["r1_gamma"], pl_weight=tr["pl_weight"])
    phases = []
    for name, module, interval in (("G", G, tr["pl_interval"]), ("D", D, tr["r1_interval"])):
        ratio = interval / (interval + 1)
        opt = torch.optim.Adam(module.parameters(), lr=tr["lr"] * ratio, betas=(0.0, 0.99 ** ratio), eps=1e-8)
        phases += [(name + "main", module, opt, 1), (name + "reg", module, opt, interval)]
    res = g_kw["img_resolution"]
    real = torch.rand([batch, 3, res, res], device=device) * 2 - 1
    c = torch.zeros([batch, 0], device=device)

    def run_phase(name, module, opt, interval):
        z = torch.randn([batch, g_kw["z_dim"]], device=device)
        opt.zero_grad(set_to_none=True)
        module.requires_grad_(True)
        loss.accumulate_gradients(phase=name, real_img=real, real_c=c, gen_z=z, gen_c=c, sync=True, gain=interval)
        module.requires_grad_(False)
        for p in module.parameters():
            if p.grad is not None:
                torch.nan_to_num(p.grad, nan=0, posinf=1e5, neginf=-1e5, out=p.grad)
        opt.step()

    beta = 0.5 ** (batch / (tr["ema_kimg"] * 1000))

    def ema():
        with torch.no_grad():
            for p_ema, p in zip(G_ema.parameters(), G.parameters()):
                p_ema.copy_(p.lerp(p_ema, beta))
            for b_ema, b in zip(G_ema.buffers(), G.buffers()):
                b_ema.copy_(b)

    per = {}
    for name, module, opt, interval in phases:
        sec = time_calls(lambda: run_phase(name, module, opt, interval), min_time, max_iters)
        per[name] = {"sec": sec, "interval": interval}
    per["ema"] = {"sec": time_calls(ema, min_time, max_iters), "interval": 1}
    it = sum(v["sec"] / v["interval"] for v in per.values())
    return record(f"{'tiny16' if tiny else 'paper256'} teacher training iteration", batch, mode, it,
                  {"phases": per, "sec_per_iteration_amortised": it})
