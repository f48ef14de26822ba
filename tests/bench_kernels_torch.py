#!/usr/bin/env python3
"""PyTorch equivalents of bench_kernels on the same grid (issue 3, part 4).

Times torch's own way of doing each kernel of the MoE layer (torch._grouped_mm,
index_select, index_add_, argsort + bincount, matmul + softmax/sigmoid + topk) over the
same grid as bench_kernels (local experts -l x tokens per expert -b..-e by -f, shapes
-H -I -E -k) and writes rows in bench_kernels' CSV schema (real/ep_bench_kernels.h),
with the torch op in the impl column. With --ours it then prints one joined table with
the issue's targets, each a ratio measured in one run:
  permute  <= 1.1x its memory floor      combine <= 1.3x its memory floor
  expert GEMMs >= 0.9x torch._grouped_mm   router no slower than torch

  build/bench_kernels -o build/kernels.csv
  python3 tests/bench_kernels_torch.py --ours build/kernels.csv -o build/kernels_torch.csv
  python3 tests/bench_kernels_torch.py --ours build/kernels.csv --torch build/kernels_torch.csv
The last form only joins two saved tables (no GPU, no torch needed).
  python3 tests/bench_kernels_torch.py -d cpu -H 128 -I 96 -E 8 -k 2 -l 1,2 -b 4 -e 8 -n 2
runs every kernel on the CPU with small shapes: a smoke test of this script, not a benchmark.

Times are per-launch CUDA events after warm-up (wall clock on the CPU); floors are the
bytes each kernel must move over the copy bandwidth measured in the same run (bytes read
+ written per second), as in bench_kernels.
"""
import argparse
import csv
import math
import statistics
import sys
import time

COLUMNS = ["kernel", "impl", "hidden", "intermediate", "n_experts", "top_k", "local_experts",
           "tokens_per_expert", "rows", "tokens", "repeats", "median_us", "min_us", "max_us",
           "flop", "bytes", "TFLOPs", "GBps", "floor_us", "ratio_floor"]
FLOATS = ["median_us", "min_us", "max_us", "flop", "bytes", "TFLOPs", "GBps", "floor_us",
          "ratio_floor"]
# bench_kernels' number formats (ep_bench_kernels.c).
FORMATS = {"median_us": "%.3f", "min_us": "%.3f", "max_us": "%.3f", "flop": "%.0f",
           "bytes": "%.0f", "TFLOPs": "%.4f", "GBps": "%.3f", "floor_us": "%.3f",
           "ratio_floor": "%.4f"}
# One grid point of one kernel: the rows of ours and of torch's that are compared.
KEY = ["kernel", "hidden", "intermediate", "n_experts", "top_k", "local_experts",
       "tokens_per_expert"]
FP8_BLOCK = 128


def parse_list(text):
    return [int(v) for v in text.split(",") if v]


def grid(lo, hi, factor):
    """bench_kernels' tokens per expert: lo, lo*factor, ... <= hi."""
    out, m = [], lo
    while m <= hi and len(out) < 64:
        out.append(m)
        m *= factor
    return out


def zipf_counts(n_experts, per_expert):
    """Same skewed counts as bench_kernels' grouped_gemm_zipf (ep_bench_kernels.c)."""
    norm = 0.0
    for e in range(n_experts):
        norm += 1.0 / (e + 1)
    total = per_expert * n_experts
    counts = [8 * math.floor(total / norm / (e + 1) / 8.0) for e in range(n_experts)]
    rem = total - sum(counts)
    e = n_experts - 1
    while rem > 0:  # 8 rows at a time from the last expert down
        add = min(8, rem)
        counts[e] += add
        rem -= add
        e = e - 1 if e > 0 else n_experts - 1
    return counts


def work(kernel, h, im, e, k, rows, tokens, counts):
    """Flop and memory-floor bytes of one launch, as bench_kernels counts them."""
    copies = tokens * k
    bias = e * 4 if kernel.endswith("_dsv3") else 0
    if kernel.startswith("grouped_gemm"):
        busy = sum(1 for c in counts if c > 0)
        return 6.0 * rows * h * im, busy * 3.0 * h * im * 2 + 2.0 * rows * h * 2
    if kernel == "permute":
        return 0.0, tokens * h * 2.0 + rows * h * 2.0
    if kernel == "permute_fp8":
        return 0.0, tokens * h * 2.0 + rows * (h + h // FP8_BLOCK * 4.0)
    if kernel == "combine":
        return 2.0 * rows * h, rows * h * 2.0 + tokens * h * 2.0
    if kernel == "layout":
        return 0.0, copies * 8.0 + (2.0 * len(counts) + 1) * 4
    if kernel.startswith("router_select"):
        return 0.0, tokens * e * 4.0 + copies * 8.0 + bias
    if kernel.startswith("router"):
        return 2.0 * tokens * h * e, tokens * h * 2.0 + e * h * 2.0 + copies * 8.0 + bias
    raise ValueError(kernel)


class Table:
    def __init__(self, args):
        self.args = args
        self.rows = []
        self.copy_GBps = 0.0
        print(f"#{'kernel':<20} {'impl':<18} {'L':>5} {'M':>7} {'median_us':>11} {'TFLOPs':>8} "
              f"{'GBps':>8} {'floor_us':>11} {'ratio':>8}")

    def emit(self, kernel, impl, n_local, per_expert, counts, times_us):
        a = self.args
        rows = n_local * per_expert
        tokens = -(-rows // a.top_k)
        flop, nbytes = work(kernel, a.hidden, a.inter, a.router_experts, a.top_k, rows, tokens,
                            counts)
        times_us = sorted(times_us)
        med = statistics.median(times_us)
        floor_us = nbytes / (self.copy_GBps * 1e3) if self.copy_GBps > 0 else 0.0
        r = dict(kernel=kernel, impl=impl, hidden=a.hidden, intermediate=a.inter,
                 n_experts=a.router_experts, top_k=a.top_k, local_experts=n_local,
                 tokens_per_expert=per_expert, rows=rows, tokens=tokens, repeats=len(times_us),
                 median_us=med, min_us=times_us[0], max_us=times_us[-1], flop=flop, bytes=nbytes,
                 TFLOPs=flop / (med * 1e6) if med > 0 else 0.0,
                 GBps=nbytes / (med * 1e3) if med > 0 else 0.0, floor_us=floor_us,
                 ratio_floor=med / floor_us if floor_us > 0 else 0.0)
        print(f" {kernel:<20} {impl:<18} {n_local:5d} {per_expert:7d} {med:11.2f} "
              f"{r['TFLOPs']:8.3f} {r['GBps']:8.1f} {floor_us:11.2f} {r['ratio_floor']:8.3f}",
              flush=True)
        self.rows.append(r)

    def save(self, path, header_lines):
        with open(path, "w", newline="") as f:
            for line in header_lines:
                f.write(f"# {line}\n")
            w = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
            w.writeheader()
            for r in self.rows:
                w.writerow({k: FORMATS[k] % v if k in FORMATS else v for k, v in r.items()})


def read_table(path):
    """The rows of a CSV in bench_kernels' schema and its '# copy_GBps:' value."""
    copy_GBps, lines = 0.0, []
    with open(path) as f:
        for line in f:
            if line.startswith("# copy_GBps:"):
                copy_GBps = float(line.split()[2])
            elif not line.startswith("#"):
                lines.append(line)
    rows = []
    for r in csv.DictReader(lines):
        for k in FLOATS:
            r[k] = float(r[k])
        rows.append(r)
    return rows, copy_GBps


def device_of(args):
    import torch
    return torch.device("cpu") if args.device == "cpu" else torch.device("cuda", int(args.device))


def measure(args, table):
    import torch
    import torch.nn.functional as F

    dev = device_of(args)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    gen = torch.Generator(device=dev)
    gen.manual_seed(1)

    def time_us(fn):
        """Per-launch times after the warm-up."""
        for _ in range(args.warmup):
            fn()
        if dev.type == "cpu":  # CPU ops are synchronous: the wall clock is the op's time
            us = []
            for _ in range(args.iters):
                t0 = time.perf_counter()
                fn()
                us.append((time.perf_counter() - t0) * 1e6)
            return us
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(args.iters)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(args.iters)]
        for i in range(args.iters):
            starts[i].record()
            fn()
            ends[i].record()
        torch.cuda.synchronize()
        return [s.elapsed_time(e) * 1000.0 for s, e in zip(starts, ends)]

    def uniform(shape, lo, hi, dtype=torch.bfloat16):
        return (torch.rand(shape, device=dev, generator=gen) * (hi - lo) + lo).to(dtype)

    # The copy bandwidth: the floors' yardstick (1 GiB as bench_kernels; 64 MiB on the CPU).
    nbytes = 1 << 30 if dev.type == "cuda" else 1 << 26
    src = torch.ones(nbytes, dtype=torch.uint8, device=dev)
    dst = torch.empty_like(src)
    table.copy_GBps = 2.0 * nbytes / (statistics.median(time_us(lambda: dst.copy_(src))) * 1e3)
    table.copy_what = f"copy_ on {dev.type}, {nbytes >> 20} MiB"
    del src, dst

    H, I, E, K = args.hidden, args.inter, args.router_experts, args.top_k
    n_groups, topk_groups, scaling = 8, 4, 2.5
    dsv3 = E % n_groups == 0 and K <= E // 2
    bias = uniform((E,), -0.05, 0.05, torch.float32)

    def select_softmax(logits):
        w, idx = logits.softmax(dim=-1).topk(K, dim=-1)
        return w / w.sum(dim=-1, keepdim=True), idx

    def select_dsv3(logits):
        T = logits.shape[0]
        s = logits.sigmoid()
        key = s + bias
        gscore = key.view(T, n_groups, -1).topk(min(2, E // n_groups), dim=-1)[0].sum(dim=-1)
        gidx = gscore.topk(topk_groups, dim=-1)[1]
        gmask = torch.zeros_like(gscore, dtype=torch.bool).scatter_(1, gidx, True)
        key = key.masked_fill(~gmask.repeat_interleave(E // n_groups, dim=1), float("-inf"))
        idx = key.topk(K, dim=-1)[1]
        wts = s.gather(1, idx)
        return wts / wts.sum(dim=-1, keepdim=True) * scaling, idx

    have_grouped_mm = hasattr(torch, "_grouped_mm")
    if not have_grouped_mm:
        print("torch._grouped_mm not available in this PyTorch: no grouped_gemm rows",
              file=sys.stderr)
    fp8 = H % FP8_BLOCK == 0 and hasattr(torch, "float8_e4m3fn")
    b13, b2 = 1.0 / math.sqrt(H), 1.0 / math.sqrt(I)
    ms = grid(args.min_tokens, args.max_tokens, args.factor)
    checked = False
    for L in args.local_experts:
        w13 = uniform((L, 2 * I, H), -b13, b13) if have_grouped_mm else None
        w2 = uniform((L, H, I), -b2, b2) if have_grouped_mm else None
        for M in ms:
            rows = L * M
            T = -(-rows // K)
            C = T * K
            # Copy c goes to local expert c % L; copies past rows are dropped.
            c_ids = torch.arange(C, device=dev)
            experts = torch.where(c_ids < rows, c_ids % L, torch.full_like(c_ids, -1)).int()
            uniform_counts = [M] * L

            # Grouped GEMMs: gate+up as one [2I, H] weight like ours, K-major.
            for kernel, counts in (("grouped_gemm", uniform_counts),
                                   ("grouped_gemm_zipf", zipf_counts(L, M))):
                if not have_grouped_mm:
                    break
                xe = uniform((rows, H), -1.0, 1.0)
                offs = torch.tensor(counts, device=dev).cumsum(0).to(torch.int32)
                w13_t, w2_t = w13.transpose(-2, -1), w2.transpose(-2, -1)

                def ffn():
                    h13 = torch._grouped_mm(xe, w13_t, offs=offs)
                    h = F.silu(h13[:, :I]) * h13[:, I:]
                    return torch._grouped_mm(h, w2_t, offs=offs)

                if not checked:  # one expert against a plain matmul
                    m0 = counts[0]
                    h13 = xe[:m0] @ w13[0].t()
                    ref = (F.silu(h13[:, :I]) * h13[:, I:]) @ w2[0].t()
                    got = ffn()[:m0]
                    err = ((got.float() - ref.float()).abs().max()
                           / ref.float().abs().max()).item()
                    if not err <= 2e-2:
                        raise SystemExit(f"torch._grouped_mm check failed: relative error {err}")
                    checked = True
                table.emit(kernel, "_grouped_mm", L, M, counts, time_us(ffn))
                del xe

            # Layout, permute, combine.
            kept = experts >= 0
            sort_key = torch.where(kept, experts, torch.full_like(experts, L))

            def layout():
                order = sort_key.argsort(stable=True)
                counts = torch.bincount(experts[kept], minlength=L)
                slot = torch.full_like(order, -1)
                slot[order[:rows]] = torch.arange(rows, device=dev)
                return order, counts.cumsum(0), slot

            table.emit("layout", "argsort+bincount", L, M, uniform_counts, time_us(layout))
            order, _, slot = layout()
            copy_of_slot = order[:rows]
            token_of_slot = (copy_of_slot // K).contiguous()

            x = uniform((T, H), -1.0, 1.0)
            table.emit("permute", "index_select", L, M, uniform_counts,
                       time_us(lambda: x.index_select(0, token_of_slot)))
            if fp8:
                def quant_then_gather():
                    blocks = x.view(T, H // FP8_BLOCK, FP8_BLOCK).float()
                    scale = blocks.abs().amax(dim=-1).clamp(min=1e-4) / 448.0
                    q = (blocks / scale.unsqueeze(-1)).to(torch.float8_e4m3fn).view(T, H)
                    # Gathered as bytes: the same traffic, without relying on fp8 index_select.
                    return (q.view(torch.uint8).index_select(0, token_of_slot),
                            scale.index_select(0, token_of_slot))

                table.emit("permute_fp8", "quant+idx_select", L, M, uniform_counts,
                           time_us(quant_then_gather))

            y = uniform((rows, H), -1.0, 1.0)
            w = torch.rand((T, K), device=dev, generator=gen)
            w_of_slot = w.flatten()[copy_of_slot]
            y_pad = torch.cat([y, torch.zeros((1, H), dtype=y.dtype, device=dev)])
            slot_pad = torch.where(slot >= 0, slot, torch.full_like(slot, rows))

            def combine_index_add():
                out = torch.zeros((T, H), dtype=torch.float32, device=dev)
                out.index_add_(0, token_of_slot, y.float() * w_of_slot.unsqueeze(1))
                return out.bfloat16()

            def combine_gather_sum():
                return (y_pad[slot_pad].view(T, K, H).float() * w.unsqueeze(-1)).sum(dim=1).bfloat16()

            table.emit("combine", "index_add_fp32", L, M, uniform_counts,
                       time_us(combine_index_add))
            table.emit("combine", "gather+sum", L, M, uniform_counts, time_us(combine_gather_sum))
            del y, y_pad

            # Router: bf16 matmul (fp32 logits), then the score function and top-k.
            wg = uniform((E, H), -0.1, 0.1)
            logits = uniform((T, E), -4.0, 4.0, torch.float32)
            for name, select, impl, on in (("", select_softmax, "softmax+topk", True),
                                           ("_dsv3", select_dsv3, "grouped_topk", dsv3)):
                if not on:
                    continue
                table.emit("router" + name, "mm+" + impl, L, M, uniform_counts,
                           time_us(lambda: select((x @ wg.t()).float())))
                table.emit("router_select" + name, impl, L, M, uniform_counts,
                           time_us(lambda: select(logits)))
            del x, wg, logits


# The targets, kernel -> (measure, limit). "floor": our time over our memory floor
# (from our run's copy bandwidth) <= limit. "speed": torch_us / ours_us >= limit; for the
# GEMMs both sides count the same FLOPs, so that is our TFLOP/s over torch._grouped_mm's.
TARGETS = {"permute": ("floor", 1.1), "combine": ("floor", 1.3),
           "grouped_gemm": ("speed", 0.9), "grouped_gemm_zipf": ("speed", 0.9),
           "router": ("speed", 1.0), "router_dsv3": ("speed", 1.0),
           "router_select": ("speed", 1.0), "router_select_dsv3": ("speed", 1.0)}


def join(ours, theirs, ours_GBps, theirs_GBps):
    """One row per (kernel, shape) of ours that torch has an equivalent of (or a target
    for) beside torch's fastest row for it, with the issue's targets. A target with a row
    on one side only counts as not met."""
    def key(r):
        return tuple(str(r[k]) for k in KEY)

    t_idx = {}
    for r in theirs:
        t_idx.setdefault(key(r), []).append(r)
    t_kernels = {r["kernel"] for r in theirs}
    print(f"\ncopy bandwidth: ours {ours_GBps:.1f} GB/s, torch run {theirs_GBps:.1f} GB/s "
          "(read + write)")
    print(f"\n{'kernel':<20} {'L':>4} {'M':>6} {'ours':<8} {'us':>10} {'torch':<18} {'us':>10} "
          f"{'torch/ours':>10}  target")
    met, total = 0, 0
    o_keys = set()
    for o in ours:
        kernel = o["kernel"]
        target = TARGETS.get(kernel)
        if not target and kernel not in t_kernels:
            continue  # no torch equivalent (the forced cuBLAS strategies)
        o_keys.add(key(o))
        total += target is not None
        miss = "  target NOT MET" if target else ""
        line = (f"{kernel:<20} {o['local_experts']:>4} {o['tokens_per_expert']:>6} "
                f"{o['impl']:<8} {o['median_us']:10.1f} ")
        if key(o) not in t_idx:
            print(line + f"{'(no torch row)':<18}{miss}")
            continue
        t = min(t_idx[key(o)], key=lambda r: r["median_us"])
        speed = t["median_us"] / o["median_us"] if o["median_us"] > 0 else 0.0
        line += f"{t['impl']:<18} {t['median_us']:10.1f} {speed:10.2f}"
        if target:
            measure, limit = target
            if measure == "floor":
                ok = o["ratio_floor"] <= limit
                line += (f"  time/floor {o['ratio_floor']:.3f} <= {limit}"
                         f" (torch {t['ratio_floor']:.2f})")
            else:
                ok = speed >= limit
                line += f"  torch/ours {speed:.3f} >= {limit}"
            met += ok
            line += " PASS" if ok else " FAIL"
        print(line)
    for k, rows in t_idx.items():
        if k not in o_keys:
            r = rows[0]
            total += r["kernel"] in TARGETS
            print(f"{r['kernel']:<20} {r['local_experts']:>4} {r['tokens_per_expert']:>6} "
                  f"{'(no row of ours)':<19}" + ("  target NOT MET" if r["kernel"] in TARGETS
                                                  else ""))
    print(f"\ntargets met: {met} of {total}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-d", "--device", default="0",
                   help="CUDA device number, or cpu for a smoke test of this script")
    p.add_argument("-w", "--warmup", type=int, default=3)
    p.add_argument("-n", "--iters", type=int, default=20)
    p.add_argument("-b", "--min-tokens", type=int, default=8)
    p.add_argument("-e", "--max-tokens", type=int, default=2048)
    p.add_argument("-f", "--factor", type=int, default=2)
    p.add_argument("-l", "--local-experts", type=parse_list, default=[8, 32])
    p.add_argument("-H", "--hidden", type=int, default=7168)
    p.add_argument("-I", "--inter", type=int, default=2048)
    p.add_argument("-E", "--router-experts", type=int, default=256)
    p.add_argument("-k", "--top-k", type=int, default=8)
    p.add_argument("-o", "--output", help="write this table as CSV")
    p.add_argument("--ours", help="bench_kernels CSV to join with")
    p.add_argument("--torch", help="a saved torch CSV: join it with --ours, measure nothing")
    args = p.parse_args()
    if args.factor < 2 or args.min_tokens < 1 or args.min_tokens > args.max_tokens:
        p.error("wants 1 <= -b <= -e and -f >= 2")

    if args.torch:
        if not args.ours:
            p.error("--torch needs --ours")
        ours, ours_GBps = read_table(args.ours)
        theirs, theirs_GBps = read_table(args.torch)
        join(ours, theirs, ours_GBps, theirs_GBps)
        return 0

    import torch
    dev = device_of(args)
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        where = f"GPU {props.name}, {props.multi_processor_count} SMs, cc {props.major}.{props.minor}"
    else:
        where = f"CPU, {torch.get_num_threads()} threads (smoke test, not a benchmark)"
    print(f"bench_kernels_torch: {where}, torch {torch.__version__}, cuda {torch.version.cuda}")
    table = Table(args)
    measure(args, table)
    if args.output:
        table.save(args.output, [
            f"tool: bench_kernels_torch, torch {torch.__version__}, cuda {torch.version.cuda}",
            "impl: torch",
            f"device: {where}",
            f"copy_GBps: {table.copy_GBps:.1f} ({table.copy_what}, bytes read + written, "
            f"median of {args.iters})",
            f"repeats: {args.iters} timed launches per row after {args.warmup} warm-up",
            "argv: " + " ".join(sys.argv),
            "date: " + time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "units: as bench_kernels (real/ep_bench_kernels.h)"])
    if args.ours:
        ours, ours_GBps = read_table(args.ours)
        join(ours, table.rows, ours_GBps, table.copy_GBps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
