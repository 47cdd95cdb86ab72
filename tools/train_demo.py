"""Training the embedded demo models on the shapes data (``studio.demo.shapes``).

    python tools/train_demo.py vae|base|lora|controlnet|upscaler [--steps N] [--out DIR]

Each stage is seeded and writes its model in the layout artists' models come in, under
``resources/models`` (or ``--out``): a diffusers pipeline folder for the base model, a kohya
``.safetensors`` LoRA, a diffusers ControlNet folder and a spandrel-loadable ``.safetensors``
upscaler. ``base`` needs the VAE; ``lora`` and ``controlnet`` need the base model. The model
cards in ``resources/models`` give each stage's time on the 2-core CPU it was trained on.

The models are small on purpose (64×64 pictures, an 8×8×4 latent, a 64-wide text encoder):
big enough to learn what the captions say, small enough to train in minutes on a CPU and to
ship in the repository.

A tool of the repository, not part of the installed app: it writes into the checkout's
``resources/models`` (the files the wheel then ships), found from this file's place.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import random
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from studio.demo import shapes

RESOURCES_DIR = Path(__file__).resolve().parent.parent / "resources"
MODELS_DIR = RESOURCES_DIR / "models"
BASE_NAME = "seed-shapes"
BASE_DIR = Path("checkpoints") / BASE_NAME
LORA_FILE = Path("loras") / "seed-shapes-stripes.safetensors"
CONTROLNET_DIR = Path("controlnet") / "seed-shapes-blob"
UPSCALER_FILE = Path("upscale_models") / "seed-shapes-2x.safetensors"
SCHEDULER_CONFIG = RESOURCES_DIR / "configs" / "sd15" / "scheduler" / "scheduler_config.json"
SIZE = 64
LORA_PICTURES = 8000
CONTROLNET_PICTURES = 10000
# Share of the ControlNet's training captions left empty, as the ControlNet paper does (50%):
# with classifier-free guidance the ControlNet also steers the unconditional pass, which must
# then draw the same shape on the hint, or guidance pushes the colours away (at 10%, cfg 5
# drew a third of the shapes in the wrong colour).
CONTROLNET_UNCONDITIONED = 0.5
# The base model predicts the velocity (v), as SD 2's 768 models do: at the noisiest steps, where
# an 8×8 latent's composition is settled, v is nearly the clean latent itself, so where the
# prompt puts the shape is learnt; predicting the noise hides it under the noise it must copy.
PREDICTION = "v_prediction"
# Where the base model's place-learning steps start (of 1000; SNR below 0.04 from here).
NOISIEST_T = 850
# Share of the training captions replaced by the empty prompt, so classifier-free guidance
# (cfg above 1) and negative prompts have an unconditional model to push away from.
UNCONDITIONED = 0.1
# Share of the base model's training captions swapped for another picture's. Real caption data
# is noisy; so, on purpose, is this: the model then gives some weight to pictures that ignore
# the prompt, as real models do, and classifier-free guidance (cfg above 1) is what takes it away.
MISLABELLED = 0.15
# Captions per training picture in the widened grammar (``Scene.phrase``).
PHRASINGS = 8
# Share of the VAE's training pictures in random colours, and the weight of the loss that holds
# its first three latent channels to each 8×8 cell's mean colour (see ``train_vae``).
VAE_ANY_COLOUR = 0.5
COLOUR_ANCHOR = 1.0
# The noise added to the latents the VAE's decoder learns from, as a share of their spread.
LATENT_NOISE = 0.05


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def vae_model() -> torch.nn.Module:
    from diffusers import AutoencoderKL

    # Four blocks: the 8× downscale every SD1.x node expects (64×64 pixels → 8×8 latent).
    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4,
                         down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
                         block_out_channels=(16, 32, 64, 64), layers_per_block=1, norm_num_groups=8,
                         sample_size=SIZE, mid_block_add_attention=False)


def unet_model() -> torch.nn.Module:
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(sample_size=SIZE // 8, in_channels=4, out_channels=4,
                                block_out_channels=(32, 64, 64), layers_per_block=1,
                                down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
                                cross_attention_dim=64, attention_head_dim=4, norm_num_groups=8)


def text_model() -> torch.nn.Module:
    from transformers import CLIPTextConfig, CLIPTextModel

    # The real CLIP vocabulary (49,408 tokens) so the real tokenizer works; the model is tiny.
    config = CLIPTextConfig(vocab_size=49408, hidden_size=64, intermediate_size=256, num_hidden_layers=2,
                            num_attention_heads=4, max_position_embeddings=77, projection_dim=64,
                            hidden_act="quick_gelu", bos_token_id=49406, eos_token_id=49407, pad_token_id=49407)
    return CLIPTextModel(config)


def alphas_cumprod() -> torch.Tensor:
    config = json.loads(SCHEDULER_CONFIG.read_text(encoding="utf-8"))
    betas = torch.linspace(config["beta_start"] ** 0.5, config["beta_end"] ** 0.5,
                           config["num_train_timesteps"], dtype=torch.float64) ** 2
    return torch.cumprod(1 - betas, 0).float()


def pictures(seed: int, count: int, style_share: float = 0.0, any_colour_share: float = 0.0,
             ) -> tuple[torch.Tensor, list[shapes.Scene]]:
    """Seeded training pictures as −1..1 tensors (N, 3, H, W); a share of them striped, and a
    share in random colours (``shapes.any_colour_scene``) instead of the vocabulary's."""
    named = int(round(count * (1 - any_colour_share)))
    plain = int(round(named * (1 - style_share)))
    parts = [shapes.batch(seed, plain)] if plain else []
    if plain < named:
        parts.append(shapes.batch(seed + 1, named - plain, style="striped"))
    if named < count:
        rng = random.Random(seed + 2)
        scenes = [shapes.any_colour_scene(rng, "striped" if rng.random() < style_share else "plain")
                  for _ in range(count - named)]
        parts.append((np.stack([np.asarray(shapes.draw(scene)) for scene in scenes]), scenes))
    array = np.concatenate([part[0] for part in parts])
    scenes = [scene for part in parts for scene in part[1]]
    tensor = torch.from_numpy(array).permute(0, 3, 1, 2).float() / 127.5 - 1
    return tensor, scenes


def batches(count: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    while True:
        yield from torch.randperm(count, generator=generator).split(batch_size)


def cosine_lr(optimizer: torch.optim.Optimizer, peak: float, steps: int, warmup: int = 100) -> Callable[[int], None]:
    def set_for(step: int) -> None:
        scale = min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(step / steps, 1.0)))
        for group in optimizer.param_groups:
            group["lr"] = peak * max(scale, 0.02)
    return set_for


def training_steps(optimizer: torch.optim.Optimizer, peak: float, steps: int, warmup: int = 100) -> Iterator[int]:
    """A training run's step numbers, each with its learning rate set (cosine_lr) before it."""
    set_lr = cosine_lr(optimizer, peak, steps, warmup)
    for step in range(steps):
        set_lr(step)
        yield step


def optimise(optimizer: torch.optim.Optimizer, loss: torch.Tensor,
             clip: Iterable[torch.nn.Parameter] | None = None) -> None:
    """One optimiser step down ``loss``'s gradient, clipped to norm 1 over ``clip`` when given."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if clip is not None:
        torch.nn.utils.clip_grad_norm_(clip, 1.0)
    optimizer.step()


def log_progress(name: str, step: int, steps: int, start: float, every: int = 100, digits: int = 4,
                 **measures: torch.Tensor) -> None:
    """Every ``every`` steps and at the last: the step, each of ``measures`` (read only then,
    since reading a value waits for it) and the time so far."""
    if step % every == 0 or step == steps - 1:
        values = " ".join(f"{label} {value.item():.{digits}f}" for label, value in measures.items())
        log(f"{name} step {step}/{steps} {values} ({time.time() - start:.0f} s)")


class Ema:
    """An exponential moving average of a module's weights, which samples better than the raw ones."""

    def __init__(self, module: torch.nn.Module, decay: float) -> None:
        self.module, self.decay = module, decay
        self.shadow = copy.deepcopy(module).requires_grad_(False)

    @torch.no_grad()
    def update(self, step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))
        for average, current in zip(self.shadow.parameters(), self.module.parameters(), strict=True):
            average.lerp_(current, 1 - decay)


def shape_weights(data: torch.Tensor, scenes: list[shapes.Scene], edge: int = 0) -> torch.Tensor:
    """Per-pixel loss weights: the shape's pixels count five times, so that the few pixels of a
    small shape are not drowned by its background; with ``edge``, so do the background's pixels
    within that many pixels of the shape, where a circle and a rounded square differ."""
    backgrounds = torch.tensor([shapes.rgb(s.background) for s in scenes], dtype=torch.float32)
    backgrounds = backgrounds.view(-1, 3, 1, 1) / 127.5 - 1
    inside = ((data - backgrounds).abs().amax(dim=1, keepdim=True) > 0.1).float()
    if edge:
        inside = F.max_pool2d(inside, 2 * edge + 1, stride=1, padding=edge)
    return 1 + 4 * inside


def train_vae(out: Path, steps: int, seed: int, start_from: Path | None = None, decoder_only: bool = False,
              peak_lr: float = 1e-3, edge: int = 0, latent_noise: float = LATENT_NOISE) -> None:
    """The VAE. With ``decoder_only`` (and ``start_from``), the encoder is frozen and only the
    decoder learns: the latents, and so the base model trained on them, stay as they are, while
    the pictures drawn from them get sharper. ``edge`` weighs the background's pixels near the
    shape as the shape's (see ``shape_weights``)."""
    torch.manual_seed(seed)
    vae = vae_model()
    if start_from is not None:
        from diffusers import AutoencoderKL

        loaded = AutoencoderKL.from_pretrained(start_from, torch_dtype=torch.float32)
        vae.load_state_dict(loaded.state_dict())
        vae.register_to_config(scaling_factor=loaded.config.scaling_factor)
        log(f"vae: continuing from {start_from}")
    elif decoder_only:
        raise ValueError("vae --decoder-only needs --start-from")
    data, scenes = pictures(seed, 12000, style_share=0.15, any_colour_share=VAE_ANY_COLOUR)
    weights = shape_weights(data, scenes, edge)
    cell_colours = torch.nn.functional.avg_pool2d(data, 8)
    if decoder_only:
        vae.encoder.requires_grad_(False)
        vae.quant_conv.requires_grad_(False)
        with torch.no_grad():
            frozen = torch.cat([vae.encode(chunk).latent_dist.mean for chunk in data.split(250)])
        trained = list(vae.post_quant_conv.parameters()) + list(vae.decoder.parameters())
    else:
        trained = list(vae.parameters())
    optimizer = torch.optim.AdamW(trained, lr=peak_lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed)
    order = batches(len(data), 16, generator)
    start = time.time()
    for step in training_steps(optimizer, peak_lr, steps):
        index = next(order)
        x, weight = data[index], weights[index]
        if decoder_only:
            mean, anchor, variance = frozen[index], torch.zeros(()), torch.zeros(())
        else:
            posterior = vae.encode(x).latent_dist
            mean = posterior.mean
            # The first three latent channels are held to the cell's mean colour. A shape's cells
            # then have the same code on any background, so the base model can compose a colour
            # pair it never saw. Unanchored, one colour's codes on two backgrounds were 1.35 apart
            # and two colours' on one background 3.26 (``tests/demo/latents.py``); anchored, 0.23
            # and 2.81.
            anchor = (mean[:, :3] - cell_colours[index]).pow(2).mean()
            variance = posterior.var.mean()
        # Decoded from the mean plus a little noise (so that the decoder is forgiving of the
        # diffusion model's small errors), while the encoder's own variance is driven towards
        # zero: VAEEncode's sample is then the picture's latent, not a noisy one.
        spread = mean.detach().std()
        noisy = mean + latent_noise * spread * torch.randn(mean.shape, generator=generator)
        y = vae.decode(noisy).sample
        error = (y - x).abs() + (y - x).pow(2)
        rec = (error * weight).sum() / (weight.sum() * 3)
        loss = rec + COLOUR_ANCHOR * anchor + 1e-2 * variance + 1e-6 * mean.pow(2).mean()
        optimise(optimizer, loss, trained)
        log_progress("vae", step, steps, start, reconstruction=rec, anchor=anchor)
        if (step + 1) % 500 == 0 or step == steps - 1:
            if not decoder_only:
                vae.eval()
                with torch.no_grad():
                    latents = torch.cat([vae.encode(chunk).latent_dist.mean for chunk in data[:2000].split(200)])
                # Latents are scaled to unit variance before diffusion, as SD's 0.18215 does for its VAE.
                vae.register_to_config(scaling_factor=float(1 / latents.std()))
                vae.train()
            save_vae(out, vae)


def save_vae(out: Path, vae: torch.nn.Module) -> None:
    target = out / BASE_DIR / "vae"
    copy.deepcopy(vae).eval().to(torch.float16).save_pretrained(target)
    log(f"vae saved to {target} (scaling factor {vae.config.scaling_factor:.4f})")


def load_vae(out: Path) -> torch.nn.Module:
    from diffusers import AutoencoderKL

    return AutoencoderKL.from_pretrained(out / BASE_DIR / "vae", torch_dtype=torch.float32).eval().requires_grad_(False)


def tokenizer() -> object:
    from studio.runtime.checkpoints import make_tokenizer

    return make_tokenizer()


def caption_ids(texts: list[str]) -> torch.Tensor:
    """Token ids (N, 77), padded as the CLIP text encoder nodes pad them."""
    return tokenizer()(texts, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids


def encode_latents(vae: torch.nn.Module, data: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The posterior mean and standard deviation of every picture, scaled for diffusion."""
    scale = vae.config.scaling_factor
    means, stds = [], []
    with torch.no_grad():
        for chunk in data.split(250):
            posterior = vae.encode(chunk).latent_dist
            means.append(posterior.mean * scale)
            stds.append(posterior.std * scale)
    return torch.cat(means), torch.cat(stds)


class DiffusionData:
    """Latents with their captions tokenised, so a training step only indexes tensors: each
    picture's four ``Scene.caption`` word orders, or (``phrasings``) that many captions of
    ``Scene.phrase``'s widened grammar, drawn from the seed."""

    def __init__(self, vae: torch.nn.Module, seed: int, count: int, style: str = "plain", phrasings: int = 0) -> None:
        data, self.scenes = pictures(seed, count, style_share=1.0 if style == "striped" else 0.0)
        self.pixels = data
        self.means, self.stds = encode_latents(vae, data)
        if phrasings:
            rng = random.Random(seed + 400)
            captions = [[scene.phrase(rng) for _ in range(phrasings)] for scene in self.scenes]
            self.ids = torch.stack([caption_ids([row[variant] for row in captions]).int()
                                    for variant in range(phrasings)], 1)
        else:
            self.ids = torch.stack([caption_ids([scene.caption(variant) for scene in self.scenes]).int()
                                    for variant in range(4)], 1)
        self.empty = caption_ids([""])[0]
        # Each latent cell's loss weight: five where the shape is, one on the background.
        masks = np.stack([np.asarray(shapes.draw_mask(scene, SIZE // 8)) for scene in self.scenes])
        self.cells = 1 + 4 * torch.from_numpy(masks).float().unsqueeze(1) / 255

    def __len__(self) -> int:
        return len(self.scenes)

    def take(self, index: torch.Tensor, generator: torch.Generator, mislabelled: float = 0.0,
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        latents = self.means[index] + self.stds[index] * torch.randn(self.means[index].shape, generator=generator)
        variant = torch.randint(0, self.ids.shape[1], (len(index),), generator=generator)
        captioned = index.clone()
        swap = torch.rand(len(index), generator=generator) < mislabelled
        captioned[swap] = torch.randint(0, len(self), (int(swap.sum()),), generator=generator)
        ids = self.ids[captioned, variant].long()
        drop = torch.rand(len(index), generator=generator) < UNCONDITIONED
        ids[drop] = self.empty
        return latents, ids, self.cells[index]


def diffusion_loss(unet: Callable[..., torch.Tensor], latents: torch.Tensor, context: torch.Tensor,
                   cumprod: torch.Tensor, generator: torch.Generator, prediction: str = PREDICTION,
                   floor: float = 0.0, where: torch.Tensor | None = None, lowest_t: int = 0) -> torch.Tensor:
    """The denoising loss for a model that predicts the noise ("epsilon") or the velocity
    ("v_prediction"), weighted per noise level as min-SNR-5 weighs the clean latent's error.

    ``floor`` keeps the noisiest levels' weight from falling below it: on an 8×8 latent, where
    the shape goes is settled at signal-to-noise ratios under 0.03, where min-SNR alone gives
    almost no weight, so place words would go unlearnt. ``where`` (N, 1, h, w) weighs latent
    cells, so that the few cells of a small shape count. ``lowest_t`` leaves out the less noisy
    steps."""
    t = torch.randint(lowest_t, len(cumprod), (len(latents),), generator=generator)
    noise = torch.randn(latents.shape, generator=generator)
    a = cumprod[t].view(-1, 1, 1, 1)
    noisy = a.sqrt() * latents + (1 - a).sqrt() * noise
    predicted = unet(noisy, t, context)
    snr = cumprod[t] / (1 - cumprod[t])
    clean_weight = torch.clamp(snr, min=floor, max=5.0)
    if prediction == "v_prediction":
        target, weight = a.sqrt() * noise - (1 - a).sqrt() * latents, clean_weight / (snr + 1)
    else:
        target, weight = noise, clean_weight / snr
    error = (predicted - target).pow(2)
    if where is not None:
        error = error * where / where.mean(dim=(1, 2, 3), keepdim=True)
    return (weight * error.mean(dim=(1, 2, 3))).mean()


def save_base(out: Path, unet: torch.nn.Module, text_encoder: torch.nn.Module) -> None:
    target = out / BASE_DIR
    copy.deepcopy(unet).to(torch.float16).save_pretrained(target / "unet")
    copy.deepcopy(text_encoder).to(torch.float16).save_pretrained(target / "text_encoder")
    tokenizer().save_pretrained(target / "tokenizer")
    (target / "scheduler").mkdir(parents=True, exist_ok=True)
    scheduler = json.loads(SCHEDULER_CONFIG.read_text(encoding="utf-8")) | {"prediction_type": PREDICTION}
    (target / "scheduler" / "scheduler_config.json").write_text(json.dumps(scheduler, indent=2) + "\n",
                                                                  encoding="utf-8")
    index = {"_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.42.1",
             "feature_extractor": [None, None], "requires_safety_checker": False, "safety_checker": [None, None],
             "scheduler": ["diffusers", "PNDMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
             "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
             "vae": ["diffusers", "AutoencoderKL"]}
    (target / "model_index.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")


def train_base(out: Path, steps: int, seed: int, start_from: Path | None = None, floor: float = 1.0,
               peak_lr: float = 1e-3, noisiest_steps: int = 600, mislabelled: float = MISLABELLED,
               phrasings: int = PHRASINGS, pictures_count: int = 30000) -> None:
    """The UNet and text encoder together. The first ``noisiest_steps`` train only the noisiest
    steps (``NOISIEST_T`` and up): there the model must put the shape where the caption says
    from nearly pure noise, and only with those steps alone does it learn to tell left from
    right within minutes (mixed with every other noise level, it had not after 3,000 steps).
    Each picture has ``phrasings`` captions of the widened grammar (``Scene.phrase``; 0: the
    four word orders of ``Scene.caption`` alone, the recipe before the widened grammar)."""
    torch.manual_seed(seed)
    vae = load_vae(out)
    data = DiffusionData(vae, seed, pictures_count, phrasings=phrasings)
    log(f"base: {len(data)} latents ready")
    unet, text_encoder = unet_model(), text_model()
    if start_from is not None:
        from diffusers import UNet2DConditionModel
        from transformers import CLIPTextModel

        unet.load_state_dict(UNet2DConditionModel.from_pretrained(start_from / "unet").float().state_dict())
        text_encoder.load_state_dict(CLIPTextModel.from_pretrained(start_from / "text_encoder").float().state_dict())
        log(f"base: continuing from {start_from}")
    params = list(unet.parameters()) + list(text_encoder.parameters())
    optimizer = torch.optim.AdamW(params, lr=peak_lr, weight_decay=0.01)
    ema_unet, ema_text = Ema(unet, 0.999), Ema(text_encoder, 0.999)
    cumprod = alphas_cumprod()
    generator = torch.Generator().manual_seed(seed)
    order = batches(len(data), 128, generator)
    start = time.time()
    for step in training_steps(optimizer, peak_lr, steps, warmup=200 if start_from is None else 50):
        latents, ids, cells = data.take(next(order), generator, mislabelled)
        context = text_encoder(ids).last_hidden_state
        loss = diffusion_loss(lambda *a: unet(*a).sample, latents, context, cumprod, generator, PREDICTION, floor,
                              cells, NOISIEST_T if step < noisiest_steps else 0)
        optimise(optimizer, loss, params)
        ema_unet.update(step)
        ema_text.update(step)
        log_progress("base", step, steps, start, loss=loss)
        if (step + 1) % 500 == 0 or step == steps - 1:
            save_base(out, ema_unet.shadow, ema_text.shadow)
            log(f"base saved at step {step + 1}")


class LowRank(torch.nn.Module):
    """A layer with a trainable low-rank change beside its frozen weight (kohya's LoRA/LoCon)."""

    def __init__(self, base: torch.nn.Module, rank: int) -> None:
        super().__init__()
        self.base = base
        if isinstance(base, torch.nn.Conv2d):
            self.down = torch.nn.Conv2d(base.in_channels, rank, base.kernel_size, base.stride, base.padding, bias=False)
            self.up = torch.nn.Conv2d(rank, base.out_channels, 1, bias=False)
        else:
            self.down = torch.nn.Linear(base.in_features, rank, bias=False)
            self.up = torch.nn.Linear(rank, base.out_features, bias=False)
        torch.nn.init.kaiming_uniform_(self.down.weight, a=5 ** 0.5)
        torch.nn.init.zeros_(self.up.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.up(self.down(x))


def add_low_rank(unet: torch.nn.Module, rank: int) -> dict[str, LowRank]:
    """Wrap the attention layers and the resnets' 3×3 convolutions: the layers kohya's
    LoRA and LoCon train."""
    chosen = {}
    for name, module in unet.named_modules():
        in_attention = ".attentions." in name and isinstance(module, (torch.nn.Linear, torch.nn.Conv2d))
        in_resnet = ".resnets." in name and name.endswith(("conv1", "conv2"))
        if in_attention or in_resnet:
            chosen[name] = module
    wrapped = {}
    for name, module in chosen.items():
        parent_name, _, child = name.rpartition(".")
        wrapped[name] = LowRank(module, rank)
        setattr(unet.get_submodule(parent_name), child, wrapped[name])
    return wrapped


def load_base(out: Path) -> tuple[torch.nn.Module, torch.nn.Module, torch.nn.Module]:
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel

    folder = out / BASE_DIR
    unet = UNet2DConditionModel.from_pretrained(folder / "unet", torch_dtype=torch.float32)
    text_encoder = CLIPTextModel.from_pretrained(folder / "text_encoder", torch_dtype=torch.float32)
    return unet.eval().requires_grad_(False), text_encoder.eval().requires_grad_(False), load_vae(out)


def train_lora(out: Path, steps: int, seed: int) -> None:
    """A LoRA that paints every shape in horizontal stripes (no trigger word: the captions are the base's)."""
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    unet, text_encoder, vae = load_base(out)
    data = DiffusionData(vae, seed + 100, LORA_PICTURES, style="striped")
    rank = 8
    layers = add_low_rank(unet, rank)
    params = [p for layer in layers.values() for p in (layer.down.weight, layer.up.weight)]
    for param in params:
        param.requires_grad_(True)
    optimizer = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.0)
    cumprod = alphas_cumprod()
    generator = torch.Generator().manual_seed(seed)
    order = batches(len(data), 64, generator)
    start = time.time()
    for step in training_steps(optimizer, 1e-3, steps):
        latents, ids, _ = data.take(next(order), generator)
        with torch.no_grad():
            context = text_encoder(ids).last_hidden_state
        loss = diffusion_loss(lambda *a: unet(*a).sample, latents, context, cumprod, generator)
        optimise(optimizer, loss)
        log_progress("lora", step, steps, start, loss=loss)
    tensors = {}
    for name, layer in layers.items():
        key = "lora_unet_" + name.replace(".", "_")
        tensors[f"{key}.lora_down.weight"] = layer.down.weight.detach().to(torch.float16).contiguous()
        tensors[f"{key}.lora_up.weight"] = layer.up.weight.detach().to(torch.float16).contiguous()
        tensors[f"{key}.alpha"] = torch.tensor(float(rank), dtype=torch.float16)
    target = out / LORA_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(target), metadata={"ss_network_dim": str(rank), "ss_network_alpha": str(rank),
                                              "ss_base_model_version": "sd_v1", "ss_output_name": target.stem})
    log(f"lora saved to {target} ({len(layers)} layers)")


def train_controlnet(out: Path, steps: int, seed: int) -> None:
    """A ControlNet whose hint, a white blob on black, says where the shape goes."""
    from diffusers import ControlNetModel

    torch.manual_seed(seed)
    unet, text_encoder, vae = load_base(out)
    rng = random.Random(seed + 200)
    # The shapes moved anywhere while the captions keep the old place, so the ControlNet learns
    # that the hint wins over the words.
    originals = [shapes.random_scene(rng) for _ in range(CONTROLNET_PICTURES)]
    scenes = [shapes.moved_anywhere(scene, rng) for scene in originals]
    pixels = torch.from_numpy(np.stack([np.asarray(shapes.draw(s)) for s in scenes])).permute(0, 3, 1, 2)
    hints = torch.from_numpy(np.stack([np.asarray(shapes.hint(s)) for s in scenes])).permute(0, 3, 1, 2)
    means, stds = encode_latents(vae, pixels.float() / 127.5 - 1)
    # A third of the captions name no place: with a ControlNet the hint says where.
    ids = caption_ids([s.caption(rng.randrange(4), frozenset({"place"}) if rng.random() < 1 / 3 else frozenset())
                       for s in scenes])
    empty = caption_ids([""])[0]
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32, 32, 32))
    controlnet.train()
    optimizer = torch.optim.AdamW(controlnet.parameters(), lr=5e-4, weight_decay=0.0)
    cumprod = alphas_cumprod()
    generator = torch.Generator().manual_seed(seed)
    order = batches(len(scenes), 64, generator)
    start = time.time()
    for step in training_steps(optimizer, 5e-4, steps):
        index = next(order)
        latents = means[index] + stds[index] * torch.randn(means[index].shape, generator=generator)
        batch_ids = ids[index].clone()
        batch_ids[torch.rand(len(index), generator=generator) < CONTROLNET_UNCONDITIONED] = empty
        with torch.no_grad():
            context = text_encoder(batch_ids).last_hidden_state
        hint = hints[index].float() / 255

        def controlled(noisy: torch.Tensor, t: torch.Tensor, ctx: torch.Tensor,
                       hint: torch.Tensor = hint) -> torch.Tensor:  # this step's hint, bound now
            down, mid = controlnet(noisy, t, encoder_hidden_states=ctx, controlnet_cond=hint, return_dict=False)
            return unet(noisy, t, ctx, down_block_additional_residuals=down, mid_block_additional_residual=mid).sample

        loss = diffusion_loss(controlled, latents, context, cumprod, generator, PREDICTION, 1.0)
        optimise(optimizer, loss, controlnet.parameters())
        log_progress("controlnet", step, steps, start, loss=loss)
    target = out / CONTROLNET_DIR
    controlnet.eval().to(torch.float16).save_pretrained(target)
    log(f"controlnet saved to {target}")


def upscaler_pairs(seed: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(64×64, 128×128) pictures of the same scenes, as 0..1 tensors; a third striped."""
    rng = random.Random(seed)
    scenes = [shapes.random_scene(rng, style="striped" if i % 3 == 0 else "plain") for i in range(count)]
    small = np.stack([np.asarray(shapes.draw(s, 64)) for s in scenes])
    large = np.stack([np.asarray(shapes.draw(s, 128)) for s in scenes])
    as_tensor = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2).float() / 255  # noqa: E731
    return as_tensor(small), as_tensor(large)


def train_upscaler(out: Path, steps: int, seed: int) -> None:
    """A ×2 Real-ESRGAN "compact" (SRVGG) upscaler, the architecture spandrel calls Compact."""
    from safetensors.torch import save_file

    from studio.runtime.upscale import import_spandrel

    torch.manual_seed(seed)
    compact = import_spandrel().architectures.Compact.Compact
    model = compact(num_in_ch=3, num_out_ch=3, num_feat=32, num_conv=8, upscale=2, act_type="prelu")
    small, large = upscaler_pairs(seed + 300, 4000)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed)
    order = batches(len(small), 16, generator)
    start = time.time()
    for step in training_steps(optimizer, 1e-3, steps):
        index = next(order)
        # Random 32×32 crops (64×64 of the target): the network is convolutional, crops are cheaper.
        top, left = (int(v) for v in torch.randint(0, 33, (2,), generator=generator))
        lr_crop = small[index, :, top:top + 32, left:left + 32]
        hr_crop = large[index, :, 2 * top:2 * top + 64, 2 * left:2 * left + 64]
        # Squared error: what PSNR measures, and it weighs the edges that bicubic blurs.
        loss = F.mse_loss(model(lr_crop), hr_crop)
        optimise(optimizer, loss)
        log_progress("upscaler", step, steps, start, every=200, digits=6, MSE=loss)
    target = out / UPSCALER_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.to(torch.float16).contiguous() for k, v in model.state_dict().items()}, str(target))
    log(f"upscaler saved to {target}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python tools/train_demo.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("stage", choices=["vae", "base", "lora", "controlnet", "upscaler"])
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=MODELS_DIR)
    parser.add_argument("--start-from", type=Path, default=None,
                        help="vae, base: continue from this VAE folder or base model folder")
    parser.add_argument("--floor", type=float, default=1.0,
                        help="base: floor under the noisiest steps' loss weight (0: plain min-SNR-5)")
    parser.add_argument("--lr", type=float, default=1e-3, help="vae, base: peak learning rate")
    parser.add_argument("--noisiest-steps", type=int, default=600,
                        help="base: how many first steps train only the noisiest steps")
    parser.add_argument("--mislabelled", type=float, default=MISLABELLED,
                        help="base: share of captions swapped for another picture's")
    parser.add_argument("--decoder-only", action="store_true",
                        help="vae: train the decoder alone (with --start-from), keeping the latents")
    parser.add_argument("--latent-noise", type=float, default=LATENT_NOISE,
                        help="vae: noise on the latents the decoder learns from, a share of their spread")
    parser.add_argument("--edge", type=int, default=0,
                        help="vae: weigh the background this many pixels around the shape as the shape")
    parser.add_argument("--phrasings", type=int, default=PHRASINGS,
                        help="base, lora: captions per picture in the widened grammar (0: the four fixed word orders)")
    parser.add_argument("--pictures", type=int, default=30000, help="base: training pictures")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    stages = {"vae": (train_vae, 3000), "base": (train_base, 3000), "lora": (train_lora, 800),
              "controlnet": (train_controlnet, 1000), "upscaler": (train_upscaler, 4000)}
    function, default_steps = stages[args.stage]
    started = time.time()
    if args.stage == "vae":
        train_vae(args.out, args.steps or default_steps, args.seed, args.start_from, args.decoder_only, args.lr,
                  args.edge, args.latent_noise)
    elif args.stage == "base":
        train_base(args.out, args.steps or default_steps, args.seed, args.start_from, args.floor, args.lr,
                   args.noisiest_steps, args.mislabelled, args.phrasings, args.pictures)
    else:
        function(args.out, args.steps or default_steps, args.seed)
    log(f"{args.stage}: {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
