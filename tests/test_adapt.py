"""Test-time domain adaptation (MABN): what adaptation may change, the checkpoint it writes,
its export with parity, the `edgedet adapt` errors, and the synthetic domains."""

import numpy as np
import pytest
import torch

from edgedet.adapt import test_time
from edgedet.adapt.aux_heads import AuxNet
from edgedet.adapt.checkpoint import save_mabn
from edgedet.adapt.config import MabnConfig
from edgedet.adapt.norm_affine import norm_affine_names
from edgedet.adapt.training import build, meta_train
from edgedet.data.domains import DOMAINS, SOURCE_DOMAINS, TARGET_DOMAINS, DomainShapes, render_in_domain

torch.set_num_threads(1)


def _trained_like(model: str, aux: str = "rotation", seed: int = 0) -> tuple[AuxNet, MabnConfig]:
    """An untrained net with BN statistics and affine params moved off their init, as training would."""
    cfg = MabnConfig(model=model, aux=aux, seed=seed)
    m = build(cfg, 10)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        m.train()
        m.net(torch.randn(16, 3, 32, 32, generator=g) * 1.5 + 0.3)
        for n, p in m.named_parameters():
            if n.endswith(("weight", "bias")) and p.dim() == 1:
                p.add_(0.1 * torch.randn(p.shape, generator=g))
    return m.eval(), cfg


def _images(n: int = 12, domain: str = "noise-high") -> torch.Tensor:
    return DomainShapes(domain, n, 32, start=100_000).tensors()[0]


@pytest.mark.parametrize("aux", ["rotation", "byol"])
def test_mabn_changes_only_norm_affine_and_keeps_source_stats(aux):
    m, cfg = _trained_like("resnet-bn", aux)
    before = {k: v.clone() for k, v in m.net.state_dict().items()}
    adapted = test_time.mabn(m, _images(), steps=2, lr=0.5)
    after = adapted.state_dict()
    affine = set(norm_affine_names(m.net))
    assert affine and all(".bn" in k or "shortcut.1" in k or "stem.1" in k for k in affine)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and changed <= affine, changed - affine
    for k in before:  # running statistics and every weight matrix untouched
        if "running_" in k or "num_batches" in k:
            assert torch.equal(before[k], after[k]), k
    assert all(torch.equal(v, m.net.state_dict()[k]) for k, v in before.items())  # input left as it was


def test_mabn_on_layernorm_net_adapts_ln_affine(tmp_path):
    from edgedet.arch import uniform_arch

    arch = tmp_path / "mini.arch.json"
    uniform_arch([8, 16, 32, 64], [1, 1, 1, 1], input_size=32, num_classes=10).save(arch)
    m, _ = _trained_like(f"quadranet-arch:{arch}")
    before = {k: v.clone() for k, v in m.net.state_dict().items()}
    after = test_time.mabn(m, _images(), steps=1, lr=1.0).state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    affine = set(norm_affine_names(m.net))
    assert changed and changed <= affine
    assert any(k.startswith("stages.") and "norm" in k for k in changed)


def test_bn_stats_and_tent_baselines():
    m, _ = _trained_like("resnet-bn")
    x = _images(16)
    re = test_time.bn_stats(m.net, x)
    bn = re.stem[1]
    with torch.no_grad():
        feats = m.net.stem[0](x)
    torch.testing.assert_close(bn.running_mean, feats.mean((0, 2, 3)), rtol=1e-4, atol=1e-5)
    t = test_time.tent(m.net, x, steps=2)
    changed = {k for k, v in t.state_dict().items() if not torch.equal(v, re.state_dict()[k])}
    assert changed and changed <= set(norm_affine_names(m.net))


@pytest.mark.parametrize("second_order", [True, False])
def test_meta_train_updates_affine_and_aux_head_only(second_order):
    m, _ = _trained_like("resnet-bn")
    cfg = MabnConfig(episodes=2, support=(4, 6), query=8, second_order=second_order)
    x, y = DomainShapes("clean", 20, 32).tensors()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    meta_train(m, [(x, y)], cfg, log=lambda s: None)
    changed = {k for k, v in m.state_dict().items() if not torch.equal(v, before[k])}
    allowed = {f"net.{n}" for n in norm_affine_names(m.net)} | {k for k in before if k.startswith("aux.")}
    assert changed & {f"net.{n}" for n in norm_affine_names(m.net)} and changed <= allowed


def test_domains_are_deterministic_per_seed_and_distinct():
    for name in ("noise-high", "jpeg-low", "texture-checker"):
        a, ya = render_in_domain(7, 32, DOMAINS[name], seed=3)
        b, yb = render_in_domain(7, 32, DOMAINS[name], seed=3)
        assert np.array_equal(a, b) and ya == yb
        c, _ = render_in_domain(7, 32, DOMAINS[name], seed=4)
        assert not np.array_equal(a, c)
    clean, _ = render_in_domain(7, 32, DOMAINS["clean"])
    for name in DOMAINS:
        if name != "clean":
            img, _ = render_in_domain(7, 32, DOMAINS[name])
            assert img.shape == (32, 32, 3) and 0 <= img.min() and img.max() <= 1
            assert np.abs(img - clean).mean() > 0.01, name
    assert set(SOURCE_DOMAINS).isdisjoint(TARGET_DOMAINS) and len(TARGET_DOMAINS) >= 6


def test_domain_folder_loader(tmp_path):
    from PIL import Image

    from edgedet.data.domain_folder import domain_folders, unlabelled_images
    from edgedet.errors import EdgedetError

    rng = np.random.default_rng(0)
    for dom in ("cam-a", "cam-b"):
        for cls in ("cat", "dog"):
            (tmp_path / dom / cls).mkdir(parents=True)
            for i in range(2):
                img = rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)
                Image.fromarray(img).save(tmp_path / dom / cls / f"{i}.png")
    doms = domain_folders(tmp_path, 32, (0.5,) * 3, (0.25,) * 3)
    assert sorted(doms) == ["cam-a", "cam-b"] and len(doms["cam-a"]) == 4
    x, y = doms["cam-b"][3]
    assert x.shape == (3, 32, 32) and y == 1
    assert unlabelled_images(tmp_path / "cam-a", 32, (0.5,) * 3, (0.25,) * 3, limit=3).shape == (3, 3, 32, 32)
    (tmp_path / "cam-b" / "bird").mkdir()
    Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(tmp_path / "cam-b" / "bird" / "0.png")
    with pytest.raises(EdgedetError, match="differ"):
        domain_folders(tmp_path, 32, (0.5,) * 3, (0.25,) * 3)


@pytest.fixture(scope="module")
def mabn_checkpoint(tmp_path_factory):
    m, cfg = _trained_like("resnet-bn")
    path = tmp_path_factory.mktemp("ck") / "resnet-bn-mabn.pt"
    save_mabn(path, m, cfg, list(SOURCE_DOMAINS))
    return path


@pytest.fixture(scope="module")
def support_stats_checkpoint(tmp_path_factory):
    m, cfg = _trained_like("resnet-bn")
    cfg.stats = "support"
    path = tmp_path_factory.mktemp("ck") / "resnet-bn-mabn-support.pt"
    save_mabn(path, m, cfg, list(SOURCE_DOMAINS))
    return path


@pytest.mark.parametrize("stats", ["source", "support"])
def test_adapt_writes_plain_checkpoint_that_exports_with_parity(stats, mabn_checkpoint, support_stats_checkpoint,
                                                                tmp_path, cli):
    from edgedet.exporters.pipeline import ExportRequest, export_artifact

    ck = mabn_checkpoint if stats == "source" else support_stats_checkpoint
    out = tmp_path / "adapted.pt"
    rc, text, err = cli("adapt", "resnet-bn", "--checkpoint", ck, "--images", "synthetic:blur-strong",
                        "--num-images", "12", "--steps", "2", "--out", out)
    assert rc == 0, err
    assert "measured here" in text and "torch thread" in text and "predicted on cortex-a76" in text and "MAPE" in text
    state = torch.load(out, weights_only=True)
    assert "aux" not in state and state["adapted"]["steps"] == 2 and state["adapted"]["num_images"] == 12
    assert state["adapted"]["bn_statistics"] == stats
    src = torch.load(ck, weights_only=True)
    assert set(state["model"]) == set(src["model"])
    assert any(not torch.equal(state["model"][k], src["model"][k]) for k in state["model"])
    stats_moved = any(not torch.equal(state["model"][k], src["model"][k]) for k in state["model"] if "running_" in k)
    assert stats_moved == (stats == "support")
    for fmt in ("onnx", "openvino"):
        res = export_artifact(ExportRequest(model="resnet-bn", format=fmt, out=tmp_path / fmt, checkpoint=out,
                                            input_size=32))
        assert res.parity.passed, res.parity.summary()


def test_adapt_bad_inputs_one_line_errors(mabn_checkpoint, tmp_path, cli):
    out = str(tmp_path / "a.pt")
    base = ["adapt", "resnet-bn", "--checkpoint", str(mabn_checkpoint), "--out", out]
    cli(*[*base, "--images", "synthetic:fog"]).assert_one_line_error("unknown synthetic domain 'fog'")
    cli(*[*base, "--images", str(tmp_path / "none")]).assert_one_line_error("no such folder")
    (tmp_path / "empty").mkdir()
    cli(*[*base, "--images", str(tmp_path / "empty")]).assert_one_line_error("no image files")
    cli(*[*base, "--images", "synthetic:clean", "--steps", "0"]).assert_one_line_error("--steps")
    cli(*["adapt", "convnet", "--checkpoint", str(mabn_checkpoint), "--out", out,
                         "--images", "synthetic:clean"]).assert_one_line_error("not a 'convnet'")
    cli(*["adapt", "resnet-bn", "--checkpoint", str(tmp_path / "x.pt"), "--out", out,
                         "--images", "synthetic:clean"]).assert_one_line_error("no such file")
    plain = tmp_path / "plain.pt"
    torch.save({"model": torch.nn.Linear(2, 2).state_dict()}, plain)
    cli(*["adapt", "resnet-bn", "--checkpoint", str(plain), "--out", out,
                         "--images", "synthetic:clean"]).assert_one_line_error("checkpoint")
    assert not (tmp_path / "a.pt").exists()


def test_reproduce_mabn_aggregates_seeds_and_targets(tmp_path):
    from edgedet.bench.reproduce.mabn import aggregate, plot, summary

    rows = [{"net": "resnet-bn", "norm": "BN", "seed": s, "target": t, "images": n, "method": m,
             "acc": 10.0 * s + (5.0 if t == "a" else 15.0) + (1.0 if m == "mabn" else 0.0)}
            for s in (0, 1) for t in ("a", "b") for n in (12, 32) for m in ("source_only", "mabn")]
    table = aggregate(rows)
    r = next(r for r in table if r["method"] == "mabn" and r["images"] == 32)
    assert r["acc_per_seed"] == [11.0, 21.0] and r["acc_mean"] == 16.0
    assert r["acc_std"] == pytest.approx(np.std([11.0, 21.0], ddof=1))
    assert r["acc_per_target"] == {"a": 11.0, "b": 21.0}
    assert summary(table) == {"mabn": 16.0, "source_only": 15.0}
    plot(table, tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 1000


def test_adapted_layernorm_checkpoint_exports_with_parity(tmp_path, cli):
    from edgedet.arch import uniform_arch
    from edgedet.exporters.pipeline import ExportRequest, export_artifact

    arch = tmp_path / "mini.arch.json"
    uniform_arch([8, 16, 32, 64], [1, 1, 1, 1], input_size=32, num_classes=10).save(arch)
    name = f"quadranet-arch:{arch}"
    m, cfg = _trained_like(name, aux="byol")
    save_mabn(tmp_path / "ln-mabn.pt", m, cfg, list(SOURCE_DOMAINS))
    out = tmp_path / "ln-adapted.pt"
    r = cli("adapt", name, "-c", tmp_path / "ln-mabn.pt", "--images", "synthetic:contrast-dark",
            "--num-images", "16", "--out", out)
    assert r.code == 0, r.err
    assert "aux" not in torch.load(out, weights_only=True)
    for fmt in ("onnx", "openvino"):
        res = export_artifact(ExportRequest(model=name, format=fmt, out=tmp_path / fmt, checkpoint=out, input_size=32))
        assert res.parity.passed, res.parity.summary()


def test_random_source_domains_stay_in_source_ranges():
    from edgedet.data.domains import SOURCE_RANGES, random_source_domain

    a = [random_source_domain("clean", np.random.default_rng([3, 7])) for _ in range(2)]
    assert a[0] == a[1]
    rng = np.random.default_rng(0)
    targets = {s for t in TARGET_DOMAINS for s in DOMAINS[t].shifts}
    for _ in range(50):
        d = random_source_domain("contrast-low", rng)
        extra = d.shifts[-1]
        assert d.shifts[:-1] == DOMAINS["contrast-low"].shifts and extra not in targets
        for v, (lo, hi) in zip(extra.params, SOURCE_RANGES[extra.kind], strict=True):
            assert lo <= v <= hi


def test_mabn_support_statistics_reestimates_bn_then_steps_affine():
    m, _ = _trained_like("resnet-bn")
    x = _images(16)
    adapted = test_time.mabn(m, x, steps=1, lr=1.0, stats="support")
    stats_only = test_time.bn_stats(m.net, x)
    for k, v in stats_only.state_dict().items():  # statistics are those of x, as bn_stats gives
        if "running_" in k:
            torch.testing.assert_close(adapted.state_dict()[k], v)
    changed = {k for k, v in adapted.state_dict().items() if not torch.equal(v, stats_only.state_dict()[k])}
    assert changed and changed <= set(norm_affine_names(m.net))
    with pytest.raises(ValueError, match="statistics"):
        test_time.mabn(m, x, steps=1, lr=1.0, stats="mixed")


def test_meta_train_with_support_statistics_restores_source_statistics():
    m, _ = _trained_like("resnet-bn")
    cfg = MabnConfig(episodes=2, support=(4, 6), query=8, stats="support")
    x, y = DomainShapes("noise-low", 20, 32).tensors()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    meta_train(m, [(x, y)], cfg, log=lambda s: None)
    after = m.state_dict()
    for k in before:
        if "running_" in k or "num_batches" in k:
            assert torch.equal(before[k], after[k]), k
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("net.") and "bn" in k)


@pytest.mark.slow  # 46-94 s measured on the shared two cores (two spawned workers start torch)
def test_reproduce_mabn_units_give_the_same_rows_in_worker_processes(tmp_path):
    """A tiny recipe run in this process and in two spawned one-thread workers: identical rows
    (each (net, seed) seeds its own RNGs), every method on every target, both checkpoints."""
    from edgedet.bench.reproduce.mabn import run

    tiny = {"train_per_domain": 8, "epochs": 1, "batch_size": 8, "episodes": 2, "meta_domains": 2,
            "meta_domain_images": 40, "query": 8}
    res = [run([0], True, tmp_path / f"j{jobs}", 1, "rotation", 0.2, "support", jobs=jobs, overrides=tiny,
               test_images=20) for jobs in (1, 2)]
    for r in res:
        assert {(x["norm"], x["method"]) for x in r["per_target_rows"]} == {
            ("BN", m) for m in ("source_only", "bn_stats", "tent", "mabn")} | {
            ("LN", m) for m in ("source_only", "tent", "mabn")}
        assert len({x["target"] for x in r["per_target_rows"]}) == len(TARGET_DOMAINS)
        assert r["recipe"]["BN"]["train_per_domain"] == 8 and r["test_images_per_target"] == 20
        assert [u["norm"] for u in r["unit_time_s"]] == ["BN", "LN"]
    def rows(r):  # the LN net's name holds its arch path, which is under each run's --out
        return [{k: v for k, v in x.items() if k != "net"} for x in r["per_target_rows"]]

    assert rows(res[0]) == rows(res[1])
    assert res[0]["summary"] == res[1]["summary"]
    for jobs in (1, 2):
        assert (tmp_path / f"j{jobs}" / "resnet-bn-mabn.pt").stat().st_size > 0
        assert (tmp_path / f"j{jobs}" / "quadranet-mini-mabn.pt").stat().st_size > 0
