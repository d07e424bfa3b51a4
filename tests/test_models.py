"""engine.models: the tiny model, loading from folders, caches and single files, and the
messages a user sees when weights are missing. Everything is built here: no downloads."""

import logging
import shutil
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from engine.model import Model
from engine.model_files import ModelNotFoundError, PickleRefusedError
from engine.models import MODEL_ALIASES, load_model
from engine.tiny import sd_turbo_architecture, tiny_model
from engine.tokenizer import ByteTokenizer
from ldm_export import model_to_ldm  # tests/ is on sys.path (pytest rootdir import)

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def put_in_cache(cache: Path, repo_id: str, folder: Path) -> Path:
    """Lay `folder` out as a cached Hub snapshot of `repo_id` (refs/main → snapshots/<commit>)."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(folder, repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    return repo / "snapshots" / COMMIT


def unet_out(model: Model, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 4, 8, 8, generator=g)
    cond = model.encode_prompt(["a test prompt"])
    with torch.no_grad():
        return model.unet(x, 500, encoder_hidden_states=cond).sample


def assert_same_model(a: Model, b: Model) -> None:
    assert torch.allclose(unet_out(a), unet_out(b), atol=1e-6)
    assert torch.allclose(a.encode_prompt(["neon city", ""]), b.encode_prompt(["neon city", ""]), atol=1e-6)
    latent = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(a.decode_latent(latent), b.decode_latent(latent), atol=1e-6)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # The tiny model's ops are too small to gain from threads, and on a shared, busy CPU
    # OpenMP threads waiting for each other turn a 15 ms pass into seconds.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_kl():
    return tiny_model(seed=0, vae="full")


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory, tiny):
    return tiny.save_pretrained(tmp_path_factory.mktemp("tiny") / "tiny-sd")


# ------------------------------------------------------------------------ tiny model

def test_tiny_is_deterministic_by_seed():
    before = torch.random.get_rng_state()
    a, b, c = tiny_model(seed=0), tiny_model(seed=0), tiny_model(seed=1)
    assert torch.equal(torch.random.get_rng_state(), before)  # building does not move the global RNG
    for part in ("unet", "vae", "text_encoder"):
        sa, sb, sc = (getattr(m, part).state_dict() for m in (a, b, c))
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
        assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_tiny_has_sd_classes_topology_and_defaults(tiny):
    from diffusers import AutoencoderTiny, UNet2DConditionModel
    from transformers import CLIPTextModel

    assert isinstance(tiny.unet, UNet2DConditionModel)
    assert isinstance(tiny.vae, AutoencoderTiny)
    assert isinstance(tiny.text_encoder, CLIPTextModel)
    sd = sd_turbo_architecture(device="meta").unet  # SD's topology: every SD bend point exists on tiny
    names = {n for n, _ in tiny.unet.named_modules()}
    assert names == {n for n, _ in sd.named_modules()}
    assert tiny.unet.config.layers_per_block == 2 and len(tiny.unet.up_blocks) == 4
    assert tiny.latent_channels == 4 and tiny.vae_scale_factor == 8 and tiny.default_size == 64
    assert (tiny.default_steps, tiny.default_guidance) == (1, 0.0)
    assert tiny.device == torch.device("cpu") and tiny.dtype == torch.float32
    cfg = tiny.scheduler_config
    assert (cfg["num_train_timesteps"], cfg["beta_schedule"]) == (1000, "scaled_linear")
    assert cfg["prediction_type"] == "epsilon"
    assert (cfg["beta_start"], cfg["beta_end"]) == (0.00085, 0.012)
    assert all(not p.requires_grad for p in tiny.unet.parameters())


def test_scheduler_config_builds_every_sd_scheduler(tiny):
    from diffusers import DDIMScheduler, DDPMScheduler, EulerDiscreteScheduler, LCMScheduler

    for cls in (DDIMScheduler, DDPMScheduler, EulerDiscreteScheduler, LCMScheduler):
        scheduler = cls.from_config(tiny.scheduler_config)
        scheduler.set_timesteps(1)
        assert int(scheduler.timesteps[0]) == 999  # "trailing": one step starts from pure noise


def test_byte_tokenizer_pads_truncates_and_keeps_eos():
    tok = ByteTokenizer()
    ids = tok(["hé", "x" * 200], padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    assert ids.shape == (2, 77) and ids.dtype == torch.long
    assert ids[0, :5].tolist() == [256, *"hé".encode(), 257]  # é is two UTF-8 bytes
    assert (ids[0, 5:] == tok.pad_token_id).all()
    assert ids[1, 0] == 256 and ids[1, -1] == 257  # truncated, EOS kept
    assert tok.decode(ids[0].tolist()) == "hé"


def test_encode_prompt_shape_dtype_and_content(tiny):
    emb = tiny.encode_prompt(["neon city", "neon city", "forest"])
    assert emb.shape == (3, 77, 32) and emb.dtype == torch.float32 and not emb.requires_grad
    assert torch.equal(emb[0], emb[1]) and not torch.allclose(emb[0], emb[2])
    assert torch.equal(tiny.encode_prompt("neon city")[0], emb[0])  # a bare string is one prompt


@pytest.mark.parametrize("vae", ["taesd", "full"])
def test_encode_decode_shapes_and_range(vae, tiny, tiny_kl):
    model = tiny if vae == "taesd" else tiny_kl
    image = torch.rand(2, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    latent = model.encode_image(image)
    assert latent.shape == (2, 4, 8, 12) and latent.dtype == torch.float32
    assert torch.equal(latent, model.encode_image(image))  # the mean, not a sample
    out = model.decode_latent(latent)
    assert out.shape == (2, 3, 64, 96) and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1
    assert out.std() > 0.02  # frames carry structure, not one clamped colour
    big = model.decode_latent(latent * 1e4)
    assert torch.isfinite(big).all() and big.min() >= 0 and big.max() <= 1


def test_tiny_builds_and_runs_fast():
    builds, passes = [], []  # best of several, so one hiccup does not fail the check
    for seed in range(3):
        start = time.perf_counter()
        model = tiny_model(seed=seed)
        builds.append(time.perf_counter() - start)
    image, cond = torch.rand(1, 3, 64, 64), model.encode_prompt(["x"])
    with torch.no_grad():
        for _ in range(4):
            start = time.perf_counter()
            model.decode_latent(model.unet(model.encode_image(image), 999, encoder_hidden_states=cond).sample)
            passes.append(time.perf_counter() - start)
    assert min(builds) < 1.0 and min(passes) < 0.5, (builds, passes)


def test_to_changes_dtype_everywhere():
    model = tiny_model(seed=0).to(dtype=torch.float64)
    assert model.dtype == torch.float64 and model.unet.dtype == torch.float64
    assert model.encode_prompt(["x"]).dtype == torch.float64
    assert model.decode_latent(torch.zeros(1, 4, 8, 8)).dtype == torch.float64


def test_load_model_tiny_by_name():
    model = load_model("tiny", device="cpu")
    assert model.name == "tiny" and model.dtype == torch.float32
    assert type(load_model("tiny", vae="full", device="cpu").vae).__name__ == "AutoencoderKL"
    with pytest.raises(ValueError, match="taesd"):
        load_model("tiny", vae="nonsense", device="cpu")


# ------------------------------------------------------------ the SD-Turbo architecture

def test_sd_turbo_architecture_is_sd21_base_size():
    model = sd_turbo_architecture(device="meta")  # no memory, instant
    cfg = model.unet.config
    assert cfg.in_channels == 4 and tuple(cfg.block_out_channels) == (320, 640, 1280, 1280)
    assert cfg.cross_attention_dim == 1024 and cfg.use_linear_projection
    assert sum(p.numel() for p in model.unet.parameters()) == 865_910_724  # SD 2.1's U-Net
    te = model.text_encoder.config
    assert (te.hidden_size, te.num_hidden_layers, te.num_attention_heads) == (1024, 23, 16)
    assert type(model.vae).__name__ == "AutoencoderTiny"
    assert (model.default_size, model.default_steps, model.default_guidance) == (512, 1, 0.0)
    assert load_model("sd-turbo-arch", device="meta", vae="full").vae.config.block_out_channels[-1] == 512


# ------------------------------------------------------------- missing weights, bad paths

def test_missing_repo_names_repo_cache_and_command(tmp_path):
    with pytest.raises(ModelNotFoundError) as err:
        load_model("someone/not-cached", cache_dir=tmp_path, device="cpu")
    message = str(err.value)
    assert "someone/not-cached is not in the Hugging Face cache" in message and str(tmp_path) in message
    assert "hf download someone/not-cached" in message and f"--cache-dir {tmp_path}" in message
    assert "Traceback" not in message


def test_missing_alias_uses_the_cache_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(ModelNotFoundError) as err:
        load_model("sd-turbo", device="cpu")
    message = str(err.value)
    assert MODEL_ALIASES["sd-turbo"] in message and str(tmp_path / "hub") in message
    assert "hf download stabilityai/sd-turbo --include" in message
    assert "--cache-dir" not in message  # the CLI reads HF_HUB_CACHE itself


def test_nonexistent_path_and_unknown_name(tmp_path):
    for name in (str(tmp_path / "model.safetensors"), "./models/nowhere", str(tmp_path / "a" / "b")):
        with pytest.raises(ModelNotFoundError, match="does not exist"):
            load_model(name, device="cpu")
    with pytest.raises(ModelNotFoundError, match="sd-turbo, sd-1.5"):
        load_model("sd-turb", device="cpu")
    with pytest.raises(ModelNotFoundError, match="model_index.json"):
        load_model(str(tmp_path), device="cpu")


def test_pickled_checkpoint_is_refused_without_the_flag(tmp_path):
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": {"model.diffusion_model.out.2.bias": torch.zeros(4)}}, path)
    with pytest.raises(PickleRefusedError) as err:
        load_model(str(path), device="cpu")
    assert "allow_pickle=True" in str(err.value) and "--allow-pickle" in str(err.value)


# ----------------------------------------------------------- folders, caches, single files

def test_local_folder_round_trip(tiny, tiny_folder, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="engine.models"):
        loaded = load_model(str(tiny_folder), device="cpu", cache_dir=tmp_path)  # TAESD not cached here
    assert "TAESD (madebyollin/taesd) is not in the Hugging Face cache" in caplog.text
    assert "hf download madebyollin/taesd" in caplog.text
    assert isinstance(loaded.tokenizer, ByteTokenizer) and type(loaded.vae).__name__ == "AutoencoderTiny"
    assert loaded.scheduler_config["_class_name"] == tiny.scheduler_config["_class_name"]
    assert loaded.default_size == 64
    assert_same_model(tiny, loaded)


def test_repo_id_and_default_taesd_come_from_the_cache(tiny, tiny_kl, tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    put_in_cache(cache, "netbend/tiny-kl", tiny_kl.save_pretrained(tmp_path / "kl"))
    tiny.vae.save_pretrained(tmp_path / "taesd")
    put_in_cache(cache, "madebyollin/taesd", tmp_path / "taesd")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))

    default = load_model("netbend/tiny-kl", device="cpu")
    assert type(default.vae).__name__ == "AutoencoderTiny"  # the live default: TAESD
    assert torch.allclose(unet_out(default), unet_out(tiny_kl), atol=1e-6)
    assert torch.allclose(default.decode_latent(torch.ones(1, 4, 8, 8)), tiny.decode_latent(torch.ones(1, 4, 8, 8)))
    full = load_model("netbend/tiny-kl", vae="full", device="cpu")
    assert type(full.vae).__name__ == "AutoencoderKL"
    assert_same_model(tiny_kl, full)
    by_path = load_model("netbend/tiny-kl", vae=str(tmp_path / "taesd"), device="cpu")
    assert type(by_path.vae).__name__ == "AutoencoderTiny"


def test_incomplete_folder_says_what_is_missing(tiny_folder, tmp_path):
    broken = shutil.copytree(tiny_folder, tmp_path / "broken")
    (broken / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(ModelNotFoundError, match="incomplete"):
        load_model(str(broken), vae="full", device="cpu")


def test_sdxl_folder_is_refused(tiny_folder, tmp_path):
    folder = shutil.copytree(tiny_folder, tmp_path / "xl")
    index = folder / "model_index.json"
    index.write_text(index.read_text().replace('"StableDiffusionPipeline"', '"StableDiffusionXLPipeline"'))
    with pytest.raises(ValueError, match="SDXL"):
        load_model(str(folder), vae="full", device="cpu")


@pytest.fixture(scope="module")
def ldm_checkpoint(tmp_path_factory, tiny_kl):
    """The tiny model (with its KL VAE) as an original-layout SD 1.x .safetensors file."""
    folder = tiny_kl.save_pretrained(tmp_path_factory.mktemp("ldm") / "config")
    path = folder.parent / "tiny-sd15.safetensors"
    save_file(model_to_ldm(tiny_kl.unet, tiny_kl.vae, tiny_kl.text_encoder), str(path))
    return path, folder


def test_single_file_ldm_checkpoint_round_trip(tiny_kl, ldm_checkpoint):
    path, config = ldm_checkpoint
    loaded = load_model(path, config=config, vae="full", device="cpu")  # pathlib paths are fine
    assert type(loaded.vae).__name__ == "AutoencoderKL" and loaded.name == str(path)
    assert_same_model(tiny_kl, loaded)
    image = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    assert torch.allclose(tiny_kl.encode_image(image), loaded.encode_image(image), atol=1e-6)


def test_single_file_pickle_loads_with_the_flag(tiny_kl, ldm_checkpoint, tmp_path):
    from safetensors.torch import load_file

    path, config = ldm_checkpoint
    ckpt = tmp_path / "tiny-sd15.ckpt"
    torch.save({"state_dict": load_file(str(path))}, ckpt)
    loaded = load_model(str(ckpt), config=str(config), vae="full", allow_pickle=True, device="cpu")
    assert torch.allclose(unet_out(loaded), unet_out(tiny_kl), atol=1e-6)


def test_single_file_without_config_names_the_config_repo(ldm_checkpoint, tmp_path):
    path, _ = ldm_checkpoint
    with pytest.raises(ModelNotFoundError) as err:
        load_model(str(path), cache_dir=tmp_path, vae="full", device="cpu")
    message = str(err.value)
    assert "stable-diffusion-v1-5/stable-diffusion-v1-5" in message and path.name in message
    assert "hf download stable-diffusion-v1-5/stable-diffusion-v1-5 --include '*.json'" in message
    assert "config=" in message


def test_single_file_with_the_wrong_config_is_a_clear_error(ldm_checkpoint, tiny_folder, tmp_path):
    path, _ = ldm_checkpoint
    wrong = shutil.copytree(tiny_folder, tmp_path / "wrong")
    unet_config = wrong / "unet" / "config.json"
    unet_config.write_text(unet_config.read_text().replace('"cross_attention_dim": 32', '"cross_attention_dim": 64'))
    with pytest.raises(ValueError, match="does not fit"):
        load_model(str(path), config=str(wrong), vae="full", device="cpu")


def test_single_file_diffusers_layout(tiny_kl, ldm_checkpoint, tmp_path):
    _, config = ldm_checkpoint
    state = {f"{name}.{k}": v.contiguous() for name in ("unet", "vae", "text_encoder")
             for k, v in getattr(tiny_kl, name).state_dict().items()}
    path = tmp_path / "tiny-diffusers.safetensors"
    save_file(state, str(path))
    assert_same_model(tiny_kl, load_model(str(path), config=str(config), vae="full", device="cpu"))


def test_lora_is_fused_into_the_unet(tiny, tiny_folder, tmp_path):
    pytest.importorskip("peft")
    rank, alpha, scale = 4, 2.0, 0.5
    width = tiny.unet.down_blocks[0].attentions[0].transformer_blocks[0].attn1.to_q.in_features
    g = torch.Generator().manual_seed(0)
    down, up = torch.randn(rank, width, generator=g), torch.randn(width, rank, generator=g)
    name = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"  # kohya's naming
    path = tmp_path / "lcm-test.safetensors"
    save_file({f"{name}.lora_down.weight": down, f"{name}.lora_up.weight": up, f"{name}.alpha": torch.tensor(alpha)},
              str(path))
    loaded = load_model(str(tiny_folder), lora=str(path), lora_scale=scale, vae="full", device="cpu")
    before = tiny.unet.down_blocks[0].attentions[0].transformer_blocks[0].attn1.to_q.weight
    after = loaded.unet.down_blocks[0].attentions[0].transformer_blocks[0].attn1.to_q.weight
    assert torch.allclose(after, before + scale * alpha / rank * up @ down, atol=1e-5)
    assert type(after) is torch.nn.Parameter  # fused, no adapter layers left
    assert loaded.scheduler_config["_class_name"] == "LCMScheduler"  # an LCM LoRA brings its scheduler
    assert (loaded.default_steps, loaded.default_guidance) == (4, 1.0)
