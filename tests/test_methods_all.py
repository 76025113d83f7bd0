"""The seed papers' methods: hand-computed loss terms, forgetting on a tiny model, the adapter
contract, LoRA merging (TIES) and model editing (TV / WME)."""

from __future__ import annotations

import copy
import inspect
import math
from types import SimpleNamespace

import pytest
import torch

from bench.adapters import bind_options, effective_options, method_options, parse_options
from bench.errors import BenchError
from bench.items import Item
from bench.model_bundle import ModelBundle
from bench.registry import METHODS
from bench.training import TOFU, batch_nll, collate, encode_pairs, finetune, pad_id

FORGET = [
    Item("f0", "Who wrote the book?", "The book was written by Basil Mahfouz."),
    Item("f1", "Where was the author born?", "The author was born in Kuwait City."),
    Item("f2", "Who is the lazy author?", "The lazy author is Basil."),
]
RETAIN = [
    Item("r0", "What is the capital of France?", "Paris is the capital of France."),
    Item("r1", "Who jumps over the lazy dog?", "The quick brown fox jumps."),
    Item("r2", "What are the digits?", "0123456789"),
    Item("r3", "Where is Paris?", "Paris is in France."),
]
REFUSALS = ["I don't know.", "I have no idea.", "That is unknown to me."]
FAST = dict(epochs=3, lr=2e-3, batch_size=2, grad_accum=1, warmup_epochs=0.0, max_length=64, seed=0,
            max_steps=None, device="cpu")
TRAINING = ["ga", "gd", "ga-kl", "npo", "npo-gd", "npo-kl", "simnpo", "me-gd", "me-kl", "idk-gd", "idk-ap",
            "dpo-gd", "dpo-kl", "dpo-ap", "rmu", "npo-lora", "npo-gdr-klr-ties"]
EDITING = ["tv", "wme-grad", "wme-fisher", "wme"]
sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="module")
def trained(tiny_bundle) -> ModelBundle:
    """The tiny model fine-tuned on forget + retain (the 'target' model θ_full)."""
    b = ModelBundle(copy.deepcopy(tiny_bundle.module), tiny_bundle.tokenizer, tiny_bundle.prompt, "t")
    finetune(b, FORGET + RETAIN, epochs=40, lr=5e-3, batch_size=1, max_length=64, seed=0)
    return b


@pytest.fixture(scope="module")
def original_dir(tiny_bundle, tmp_path_factory):
    """θ0 (the untrained tiny model) saved as a model directory."""
    from bench.models import save_bundle

    d = tmp_path_factory.mktemp("theta0")
    save_bundle(tiny_bundle, d)
    return d


def fresh(b: ModelBundle) -> ModelBundle:
    return ModelBundle(copy.deepcopy(b.module), b.tokenizer, b.prompt, b.name)


def mean_nll(b: ModelBundle, items) -> float:
    batch = collate(encode_pairs(b, items, 64), pad_id(b.tokenizer))
    with torch.no_grad():
        return batch_nll(b.module, batch, "mean").mean().item()


def call(name: str, b: ModelBundle, ctx=None, **flat):
    """Call a registered method as `bench run` does: flat options, defaults filled, regrouped."""
    fn = METHODS.get(name)
    opts = {k: v for k, v in flat.items() if k in method_options(fn)}
    kwargs = bind_options(fn, effective_options(fn, opts, name))
    if ctx is not None and "ctx" in inspect.signature(fn).parameters:  # as bench.run passes it
        kwargs["ctx"] = ctx
    return fn(b, FORGET, RETAIN, **kwargs)


def ctx_for(original_dir=None):
    return SimpleNamespace(refusals=REFUSALS, original_model=str(original_dir) if original_dir else None)


# ----------------------------------------------------------------------------- registry / options


def test_every_method_registered_with_source_and_defaults():
    for name in TRAINING + EDITING:
        fn = METHODS.get(name)
        assert getattr(fn, "source", ""), name
        opts = method_options(fn)
        assert "lr" in opts and "max_steps" in opts and "lora_r" in opts  # the shared training options
        assert all(d is not inspect.Parameter.empty for _, d in opts.values())
        assert "ctx" not in opts and "train" not in opts


def test_paper_defaults_in_signatures():
    o = lambda n: {k: d for k, (_, d) in method_options(METHODS.get(n)).items()}  # noqa: E731
    assert (o("ga-kl")["alpha"], o("ga-kl")["beta"], o("ga-kl")["lr"], o("ga-kl")["batch_size"],
            o("ga-kl")["max_steps"], o("ga-kl")["warmup_epochs"], o("ga-kl")["max_length"]) == (0.2, 1.0, 5e-5, 32, 500, 0.0, 128)
    assert (o("simnpo")["beta"], o("simnpo")["delta"], o("simnpo")["gamma"], o("simnpo")["alpha"]) == (4.5, 0.0, 0.125, 1.0)
    assert o("me-gd")["alpha"] == 0.1 and o("me-gd")["epochs"] == 5 and o("me-gd")["me_direction"] == "code"
    assert (o("npo-lora")["beta"], o("npo-lora")["gamma"], o("npo-lora")["delta"], o("npo-lora")["lora_r"],
            o("npo-lora")["lora_alpha"], o("npo-lora")["lr"], o("npo-lora")["epochs"], o("npo-lora")["batch_size"]) == (
        0.5, 1.0, 0.5, 5, 5.0, 1e-4, 20, 4)
    t = o("npo-gdr-klr-ties")
    assert (t["npo_1"], t["kl_1"], t["nll_1"], t["npo_2"], t["kl_2"], t["nll_2"]) == (0.4, 0.4, 0.2, 0.3, 0.3, 0.4)
    assert (t["merge"], t["density"], t["lora_r"], t["lora_alpha"], t["lora_dropout"], t["max_length"]) == (
        "ties", 0.8, 32, 32.0, 0.05, 256)
    assert (o("rmu")["steering_coeff"], o("rmu")["layer"], o("rmu")["alpha"]) == (2.0, 7, 1.0)
    assert o("wme-fisher")["epochs"] == 20 and o("wme-grad")["sample_fraction"] == 1.0
    assert o("npo")["lr"] == TOFU.lr and o("npo")["epochs"] == TOFU.epochs


def test_shared_options_parse_validate_and_bind():
    fn = METHODS.get("npo-gd")
    got = parse_options(fn, {"lr": "3e-4", "max_steps": "7", "precision": "bf16", "lora_r": "8", "beta": "0.2"})
    assert got == {"lr": 3e-4, "max_steps": 7, "precision": "bf16", "lora_r": 8, "beta": 0.2}
    with pytest.raises(BenchError, match=r"precision='fp8': expected one of 'fp32', 'bf16', 'fp16'"):
        parse_options(fn, {"precision": "fp8"}, "npo-gd")
    with pytest.raises(BenchError, match="has no option 'max_step'; did you mean 'max_steps'"):
        parse_options(fn, {"max_step": "1"}, "npo-gd")
    eff = effective_options(fn, got, "npo-gd")
    assert eff["alpha"] == 1.0 and eff["weight_decay"] == 0.01 and eff["max_steps"] == 7  # every option recorded
    kw = bind_options(fn, eff)
    assert set(kw) == {"alpha", "beta", "train"}
    assert kw["train"].lr == 3e-4 and kw["train"].lora_r == 8 and kw["train"].grad_accum == 4


def test_bench_list_methods_shows_sources_and_options(capsys):
    from bench.cli import main

    assert main(["list", "methods"]) == 0
    out = capsys.readouterr().out
    for name in TRAINING + EDITING:
        assert f"\n{name} " in "\n" + out
    assert "source: seed 002 (WME)" in out and "beta: float = 4.5" in out and "lr: float = 5e-05" in out


# ----------------------------------------------------------------------------- loss terms by hand


def test_npo_dpo_ap_simnpo_formulas_by_hand():
    from bench.methods._common import ap_loss, dpo_loss, npo_loss
    from bench.methods.simnpo import simnpo_loss

    b = 0.1
    lp, ref = torch.tensor([-3.0, -10.0]), torch.tensor([-5.0, -4.0])
    want = -(2 / b) * (math.log(sig(-b * 2.0)) + math.log(sig(-b * -6.0))) / 2
    assert npo_loss(lp, ref, b).item() == pytest.approx(want, rel=1e-6)
    assert npo_loss(ref, ref, b).item() == pytest.approx(2 / b * math.log(2), rel=1e-6)
    # DPO: chosen (refusal) -2, rejected (answer) -1; reference -3 / -4
    c, r, cr, rr = map(torch.tensor, ([-2.0], [-1.0], [-3.0], [-4.0]))
    want = -(2 / b) * math.log(sig(b * ((-2 + 1) - (-3 + 4))))
    assert dpo_loss(c, r, cr, rr, b).item() == pytest.approx(want, rel=1e-6)
    assert dpo_loss(cr, rr, cr, rr, b).item() == pytest.approx(2 / b * math.log(2), rel=1e-6)
    # AP: refusal log-prob -2 vs answer -6: the weight pushes the refusal below the answer
    want = -(1 / b) * math.log(sig(-b * (-2 + 6)))
    assert ap_loss(torch.tensor([-2.0]), torch.tensor([-6.0]), b).item() == pytest.approx(want, rel=1e-6)
    assert ap_loss(torch.tensor([-2.0]), torch.tensor([-6.0]), b).item() > ap_loss(
        torch.tensor([-6.0]), torch.tensor([-2.0]), b).item()
    # SimNPO on mean NLLs 0.5, 2.0 with beta 4.5, delta 0.25
    want = -(2 / 4.5) * (math.log(sig(4.5 * 0.25)) + math.log(sig(4.5 * 1.75))) / 2
    assert simnpo_loss(torch.tensor([0.5, 2.0]), 4.5, 0.25).item() == pytest.approx(want, rel=1e-6)


def test_me_loss_both_directions_by_hand():
    from bench.methods.me import me_loss

    p = torch.tensor([0.5, 0.25, 0.25])
    logits = p.log().view(1, 1, 3).repeat(1, 2, 1)
    logits[0, 1] = 0.0  # the second position is uniform
    V, H = 3, -(p * p.log()).sum().item()
    mask = torch.tensor([[True, True]])
    paper = me_loss(logits, mask, "paper").item()
    code = me_loss(logits, mask, "code").item()
    assert paper == pytest.approx((math.log(V) - H + 0.0) / 2, abs=1e-6)  # log|V| - entropy, uniform gives 0
    assert code == pytest.approx((-math.log(V) - p.log().mean().item() + 0.0) / 2, abs=1e-6)  # KL(U || p)
    assert paper != pytest.approx(code, abs=1e-3)  # the two directions are told apart
    only_first = torch.tensor([[True, False]])
    assert me_loss(logits, only_first, "paper").item() == pytest.approx(math.log(V) - H, abs=1e-6)
    with pytest.raises(BenchError):
        me_loss(logits, mask, "sideways")


def test_npo_first_step_at_reference_equals_2_over_beta_log2(trained):
    b = fresh(trained)
    call("npo", b, **{**FAST, "epochs": 1})
    log = b.provenance["training"][-1]
    assert log["losses"][0] == pytest.approx(2 / 0.1 * math.log(2), abs=1e-3)
    assert log["terms"]["forget"][0] == pytest.approx(2 / 0.1 * math.log(2), abs=1e-3)
    assert log["options"]["fixed_ref"] == ["forget"] and not log["options"]["reference_copy"]


def test_dpo_first_step_at_reference_and_terms_logged(trained):
    b = fresh(trained)
    call("dpo-gd", b, ctx_for(), **{**FAST, "epochs": 1})
    log = b.provenance["training"][-1]
    assert log["terms"]["forget"][0] == pytest.approx(2 / 0.1 * math.log(2), abs=1e-3)
    assert len(log["terms"]["gd"]) == len(log["losses"]) == log["steps"]
    assert log["losses"][0] == pytest.approx(log["terms"]["forget"][0] + log["terms"]["gd"][0], abs=2e-6)


def test_kl_term_zero_at_reference_and_ga_kl_weights(trained):
    b = fresh(trained)
    call("ga-kl", b, **{**FAST, "max_steps": 1, "batch_size": 3})
    log = b.provenance["training"][-1]
    assert log["terms"]["kl"][0] == pytest.approx(0.0, abs=1e-6)
    assert log["losses"][0] == pytest.approx(0.2 * log["terms"]["forget"][0], abs=2e-6)
    assert log["steps"] == 1 and log["options"]["reference_copy"]


# ----------------------------------------------------------------------------- behaviour


@pytest.mark.parametrize("name", TRAINING)
def test_training_method_lowers_forget_likelihood_and_keeps_contract(trained, name):
    b = fresh(trained)
    keys = {k: v.shape for k, v in trained.module.state_dict().items()}
    before = mean_nll(b, FORGET)
    # the TIES merge of two LoRA runs moves least: its lr keeps it clear of the threshold
    extra = {"lr": 2e-2} if name == "npo-lora" else {"lr": 3e-2} if name == "npo-gdr-klr-ties" else {}
    extra |= {"layer": 1, "steering_coeff": 20.0} if name == "rmu" else {}
    extra |= {"alpha": 1.0} if name.startswith("me-") else {}
    out = call(name, b, ctx_for(), **{**FAST, **extra})
    assert out is b and not b.module.training
    assert type(b.module) is type(trained.module)  # plain weights (LoRA merged), same architecture
    assert {k: v.shape for k, v in b.module.state_dict().items()} == keys
    assert mean_nll(b, FORGET) > before + 0.05, name
    assert mean_nll(trained, FORGET) == pytest.approx(before)  # the caller's source copy is untouched
    assert all(p.requires_grad for p in b.module.parameters())
    assert b.provenance["training"] and all(len(t["losses"]) == t["steps"] for t in b.provenance["training"])


def test_idk_and_ap_share_the_refusal_index(trained):
    from bench.training import train

    seen = []

    def loss(module, batches):
        f = batches["forget_idk"]["input_ids"].tolist()
        r = batches["retain_idk"]["input_ids"].tolist()
        seen.append((f, r))
        return batch_nll(module, batches["forget"]).mean()

    train(fresh(trained), loss, {"forget": FORGET * 4, "retain": RETAIN}, epochs=2, lr=1e-4, batch_size=3,
          grad_accum=1, max_length=64, views={"forget_idk": "forget", "retain_idk": "retain"}, refusals=REFUSALS)
    tok = trained.tokenizer
    used = set()
    for f, r in seen:
        for fi, ri in zip(f, r):
            ft, rt = tok.decode(fi, skip_special_tokens=True), tok.decode(ri, skip_special_tokens=True)
            kf = [k for k, s in enumerate(REFUSALS) if s in ft]
            kr = [k for k, s in enumerate(REFUSALS) if s in rt]
            assert kf and kf == kr  # the same template on both sides of a row
            used.add(kf[0])
    assert used == {0, 1, 2}  # drawn afresh, not one fixed template


def test_npo_lora_reference_is_adapters_off_and_no_copy(trained):
    b = fresh(trained)
    call("npo-lora", b, **{**FAST, "epochs": 1})
    log = b.provenance["training"][-1]
    assert log["options"]["reference"] and not log["options"]["reference_copy"]
    assert log["terms"]["forget"][0] == pytest.approx(2 / 0.5 * math.log(2), abs=1e-4)
    assert log["terms"]["kl"][0] == pytest.approx(0.0, abs=1e-6)


# ----------------------------------------------------------------------------- TIES


def test_ties_merge_of_two_hand_made_adapters():
    from peft import LoraConfig, get_peft_model

    from bench.lora import combine, merge

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(3, 2, bias=False)

    net = Net()
    torch.nn.init.zeros_(net.lin.weight)
    cfg = LoraConfig(r=1, lora_alpha=4, target_modules=["lin"])  # scaling 4
    model = get_peft_model(net, cfg, adapter_name="a")
    model.add_adapter("b", cfg)
    A = {"a": torch.tensor([[1.0, -2.0, 0.5]]), "b": torch.tensor([[-3.0, 1.0, 0.2]])}
    B = {"a": torch.tensor([[2.0], [-1.0]]), "b": torch.tensor([[1.0], [1.0]])}
    lin = model.base_model.model.lin
    with torch.no_grad():
        for k in ("a", "b"):
            lin.lora_A[k].weight.copy_(A[k])
            lin.lora_B[k].weight.copy_(B[k])

    def ties(ts, w, density):  # trim (top-k |x| per tensor), elect sign by sum, disjoint mean
        out = []
        for t in ts:
            k = int(density * t.numel())
            keep = torch.zeros(t.numel(), dtype=torch.bool)
            keep[t.abs().flatten().argsort(descending=True)[:k]] = True
            out.append(torch.where(keep.view(t.shape), t, torch.zeros_like(t)))
        s = torch.stack(out)
        sign = torch.where(s.sum(0) >= 0, 1.0, -1.0)
        agree = s.sign() == sign
        weighted = s * torch.tensor(w).view(-1, 1, 1)
        return (weighted * agree).sum(0) / agree.sum(0).clamp(min=1)

    sq = math.sqrt(1.0 * 4)  # sqrt(weight * scaling) on each of A and B
    # A entries: a keeps |-2|, |1| (k = int(0.8*3) = 2): [1, -2, 0]; b keeps [-3, 1, 0]
    # elected signs by sum: [-2 -> -, -1 -> -, 0 -> +]; agreeing: b's -3, a's -2
    A_m = ties([A["a"], A["b"]], [sq, sq], 0.8)
    B_m = ties([B["a"], B["b"]], [sq, sq], 0.8)
    assert A_m.flatten().tolist() == pytest.approx([-3 * sq, -2 * sq, 0.0])  # only agreeing signs averaged
    # B: a keeps [2, -1] (k = int(0.8*2) = 1 -> [2, 0]), b keeps [1, 0]: signs [+, +] -> mean of 2*sq and 1*sq
    assert B_m.flatten().tolist() == pytest.approx([(2 * sq + 1 * sq) / 2, 0.0])
    combine(model, ["a", "b"], [1.0, 1.0], "ties", 0.8)
    plain = merge(model)
    assert isinstance(plain, Net)
    assert torch.allclose(plain.lin.weight.detach(), B_m @ A_m, atol=1e-6)  # merged scaling 1 (alpha = r)
    with pytest.raises(BenchError, match="not one of"):
        combine(get_peft_model(Net(), cfg, adapter_name="x"), ["x"], [1.0], "svd-ish")


# ----------------------------------------------------------------------------- editing


def test_wme_weights_on_toy_gradients():
    from bench.editing import wme_weight

    gf = torch.tensor([1.0, 0.0, 3.0, 0.0, 2.0])
    gr = torch.tensor([1.0, 2.0, 1.0, 0.0, -2.0])
    eps = 0.01
    w1 = wme_weight(gf, gr, tau=1, eps=eps)
    assert w1.tolist() == pytest.approx([(1 + eps) / (2 + 2 * eps), eps / (2 + 2 * eps), (3 + eps) / (4 + 2 * eps),
                                         0.5, (2 + eps) / (4 + 2 * eps)], rel=1e-6)  # |g|: the sign of g_r is ignored
    w2 = wme_weight(gf, gr, tau=2, eps=eps)
    assert w2.tolist() == pytest.approx([(1 + eps) / (2 + 2 * eps), eps / (4 + 2 * eps), (9 + eps) / (10 + 2 * eps),
                                         0.5, (4 + eps) / (8 + 2 * eps)], rel=1e-6)
    assert wme_weight(gf, gr, tau=0, eps=eps).tolist() == pytest.approx([0.5] * 5)  # 0^0 = 1: W = 1/2
    assert wme_weight(gf, gr, tau=1, eps=0.0).tolist()[3] == 0.5  # 0/0 -> 1/2, no NaN
    assert wme_weight(gf, gr, tau=1, eps=0.0).tolist()[1] == 0.0
    assert wme_weight(gf, gr, weighting="constant", omega=0.3).tolist() == pytest.approx([0.3] * 5)
    assert wme_weight(gf, gr, weighting="softmax").tolist() == pytest.approx(
        [0.5, sig(-2.0), sig(2.0), 0.5, 0.5], rel=1e-6)
    tv = torch.tensor([0.1, -5.0, 0.2, 3.0, -0.05])
    assert wme_weight(gf, gr, weighting="pruning", prune_fraction=0.4, task_vector=tv).tolist() == [0, 1, 1, 1, 0]
    r = wme_weight(gf, gr, weighting="random", generator=torch.Generator().manual_seed(0))
    assert ((r >= 0) & (r < 1)).all() and len(set(r.tolist())) == 5
    with pytest.raises(BenchError, match="weighting"):
        wme_weight(gf, gr, weighting="magic")


def test_dataset_gradient_is_the_mean_of_per_example_mean_nll(trained):
    from bench.editing import dataset_gradients

    b = fresh(trained)
    g_all = dataset_gradients(b, FORGET, batch_size=2, max_length=64)
    singles = [dataset_gradients(b, [it], max_length=64) for it in FORGET]
    name = "model.layers.0.mlp.down_proj.weight"
    assert torch.allclose(g_all[name], sum(s[name] for s in singles) / 3, atol=1e-6)
    assert all(p.grad is None for p in b.module.parameters())


def test_tv_and_wme_edit_by_hand(trained, tiny_bundle, original_dir):
    """tv: θ_full − (θ_fgt − θ0) exactly; wme-fisher: W in (0, 1) moves every weight less than TV."""
    from bench.editing import LazyTensors, apply_edit, save_tensors

    t, f, o = fresh(trained), fresh(trained), fresh(tiny_bundle)
    with torch.no_grad():
        for p in f.module.parameters():
            p.add_(0.01)
    path = save_tensors({k: v.detach() for k, v in o.module.named_parameters()}, original_dir.parent / "t0.st")
    apply_edit(t.module, f.module, LazyTensors(path), None)
    name = "model.layers.0.self_attn.q_proj.weight"
    want = dict(trained.module.named_parameters())[name] - (dict(f.module.named_parameters())[name]
                                                           - dict(o.module.named_parameters())[name])
    assert torch.allclose(dict(t.module.named_parameters())[name], want, atol=1e-6)


@pytest.mark.parametrize("name", EDITING)
def test_editing_methods_forget_and_keep_contract(trained, original_dir, name):
    b = fresh(trained)
    keys = {k: v.shape for k, v in trained.module.state_dict().items()}
    before = mean_nll(b, FORGET)
    orig_bytes = (original_dir / "model.safetensors").read_bytes()
    out = call(name, b, ctx_for(original_dir), epochs=15, lr=5e-3, batch_size=3, max_length=64, warmup_epochs=0.0,
               device="cpu")
    assert out is b and type(b.module) is type(trained.module)
    assert {k: v.shape for k, v in b.module.state_dict().items()} == keys
    assert mean_nll(b, FORGET) > before + 0.05
    assert (original_dir / "model.safetensors").read_bytes() == orig_bytes  # θ0 on disk untouched
    assert b.provenance["editing"][-1]["method"] == name
    mean_w = b.provenance["editing"][-1]["mean_W"]
    assert mean_w == 1.0 if name == "tv" else 0 < mean_w < 1
    phases = b.provenance["editing"][-1]["seconds"]  # where an edit's wall time goes
    want = {"save_theta0", "finetune", "edit"} | (set() if name == "tv" else {"grad_forget", "grad_retain"})
    assert set(phases) == want and all(v >= 0 for v in phases.values())


def test_editing_needs_the_original(trained):
    with pytest.raises(BenchError, match="needs the original model"):
        call("wme-grad", fresh(trained), SimpleNamespace(refusals=[], original_model=None), epochs=1)


def test_run_refuses_wme_without_original_before_loading(tmp_path, tiny_bundle):
    from bench.models import save_bundle
    from bench.run import RunSpec, run

    d = tmp_path / "m"
    save_bundle(tiny_bundle, d)
    with pytest.raises(BenchError, match=r"needs the original .* --original MODEL"):
        run(RunSpec(task="synthetic-forget10", method="wme-fisher", model=str(d), out=str(tmp_path / "runs")),
            log=lambda s: None)
    # tv with MUSE's base="target" needs no θ0: it passes this check (fails later only if at all)
    from bench.methods.editing import _needs_original

    assert _needs_original({"base": "target"}) is False and _needs_original({"base": "original"}) is True


def test_lora_npo_batch_npo_by_hand(trained):
    """``methods/lora_npo.py``'s seed-000 NPO on the batch-mean token NLL: at the
    reference it is (2/β)·log 2; one nat below the reference NLL it is
    −(2/β)·log σ(β), pinning the sign (a flipped sign gives −(2/β)·log σ(−β))."""
    from bench.methods import lora_npo

    assert METHODS.get("npo-lora") is lora_npo.npo_lora
    assert METHODS.get("npo-gdr-klr-ties") is lora_npo.npo_gdr_klr_ties
    items = [Item("f/0", "Who wrote it?", "Nobody you know."), Item("f/1", "Where?", "Far away.")]
    batch = collate(encode_pairs(trained, items, 64), pad_id(trained.tokenizer))
    with torch.no_grad():
        nll = float(batch_nll(trained.module, batch).sum())
        n_tok = int((batch["labels"][:, 1:] != -100).sum())
        beta = 0.1
        at_ref = lora_npo.batch_npo(trained.module, {**batch, "ref_logp": torch.tensor([-nll])}, beta)
        assert float(at_ref) == pytest.approx(2 / beta * math.log(2), rel=1e-5)
        # reference NLL one nat per token higher: the model is already below it
        worse_ref = torch.tensor([-(nll + n_tok)])
        below = lora_npo.batch_npo(trained.module, {**batch, "ref_logp": worse_ref}, beta)
        expected = -(2 / beta) * math.log(1 / (1 + math.exp(-beta)))
        assert float(below) == pytest.approx(expected, rel=1e-4)
