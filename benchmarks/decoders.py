"""Decoder benchmark: the paper's decoder against the per-factor ones, at one preset's size.

    python -m benchmarks.decoders                       # cpu-objects-paper size, 1 thread
    python -m benchmarks.decoders --preset cpu-demo --rounds 10 --threads 2

For every ``--decoder`` (and the additive decoder with ``--encoder residual``), times (a)
the decoder's forward and backward on the B T frames of one batch and (b) a whole training
step (``NegELBO`` with Trace_ELBO, backward, Adam), in interleaved rounds after a warm-up so
that drift in machine load hits every variant alike. Prints a Markdown table of medians and
the ratio to the paper's decoder.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from pyro_dvip import NegELBO, make_config
from pyro_dvip.build import build_model

VARIANTS = [
    ("paper", {}),
    ("additive", {}),
    ("composite", {}),
    ("additive", dict(encoder="residual")),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu-objects-paper")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    models, steps = {}, {}
    for kind, options in VARIANTS:
        config = make_config(args.preset, decoder=kind, **options)
        name = kind if kind != "paper" else "paper, whole latent"
        if options.get("encoder"):
            name += f", {options['encoder']} encoder"
        torch.manual_seed(0)
        dvip = build_model(config)
        loss, optimizer = NegELBO(dvip), torch.optim.Adam(dvip.parameters(), lr=config.lr)
        x = torch.rand(config.batch_size, config.seq_len, config.channels, config.image_size,
                       config.image_size)  # fmt: skip
        z = torch.randn(config.batch_size * config.seq_len, dvip.z_dim)

        def decoder_pass(dvip=dvip, z=z):
            dvip.decoder(z).square().sum().backward()

        def train_step(loss=loss, optimizer=optimizer, x=x):
            optimizer.zero_grad()
            loss(x).backward()
            optimizer.step()

        models[name], steps[name] = decoder_pass, train_step
    times = {name: ([], []) for name in models}
    for round_ in range(args.rounds + 1):  # round 0 warms up
        for name in models:
            for i, fn in enumerate((models[name], steps[name])):
                start = time.perf_counter()
                fn()
                if round_:
                    times[name][i].append(time.perf_counter() - start)
    paper = [statistics.median(t) for t in times[next(iter(times))]]
    print(f"{args.preset} size, {args.threads} thread(s), median of {args.rounds} rounds\n")
    print("| decoder | decoder fwd+bwd (ms) | ratio | training step (ms) | ratio |")
    print("|---|---|---|---|---|")
    for name, (dec, step) in times.items():
        d, s = statistics.median(dec), statistics.median(step)
        print(f"| {name} | {1000 * d:.0f} | {d / paper[0]:.2f} | {1000 * s:.0f} | "
              f"{s / paper[1]:.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
