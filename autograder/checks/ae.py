"""Hidden checks for 01_autoencoder.ipynb."""

from __future__ import annotations

import torch

from autograder.checks import (
    Mistake,
    Recorder,
    close,
    layer_kinds,
    refuse,
    require,
    require_logits,
    swapped,
    toy_images,
)
from autograder.checks import reference as ref


def _make(Autoencoder, **kwargs):
    try:
        return Autoencoder(**kwargs)
    except TypeError as exc:
        raise Mistake(
            f"Autoencoder({', '.join(f'{k}={v}' for k, v in kwargs.items())}) failed ({exc}): "
            f"the constructor must take latent_dim as an argument",
            misconception="ae_model.constructor",
        ) from exc


def check_encoder(Autoencoder) -> None:
    """encode maps (B, 1, 28, 28) images to (B, latent_dim) codes, through strided convolutions."""
    torch.manual_seed(0)
    for latent_dim in (64, 16):
        model = _make(Autoencoder, latent_dim=latent_dim)
        for batch in (1, 5):
            code = model.encode(torch.rand(batch, 1, 28, 28))
            require(
                isinstance(code, torch.Tensor) and tuple(code.shape) == (batch, latent_dim),
                f"encode of a batch of {batch} with latent_dim={latent_dim} should give shape "
                f"({batch}, {latent_dim}); got {getattr(code, 'shape', type(code))}: flatten the conv "
                f"features and map them to latent_dim with a Linear layer",
                misconception="ae_encode.shape",
            )
    layers = layer_kinds(model)
    require(
        any(kind == "Conv2d" and stride and max(stride) >= 2 for kind, stride in layers),
        "the encoder should downsample with strided convolutions (nn.Conv2d(..., stride=2))",
        misconception="ae_encode.no_strided_conv",
    )
    pools = [kind for kind, _ in layers if kind in ("MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d")]
    require(
        not pools, "downsample with strided convolutions instead of pooling layers", misconception="ae_encode.pooling"
    )


def check_decoder(Autoencoder) -> None:
    """decode maps (B, latent_dim) codes to (B, 1, 28, 28) logits, upsampling with transposed convolutions."""
    torch.manual_seed(0)
    model = _make(Autoencoder, latent_dim=64)
    out = model.decode(3 * torch.randn(6, 64))
    require(
        isinstance(out, torch.Tensor) and tuple(out.shape) == (6, 1, 28, 28),
        f"decode of 6 codes should give shape (6, 1, 28, 28); got {getattr(out, 'shape', type(out))}",
        misconception="ae_decode.shape",
    )
    require(
        any(kind == "ConvTranspose2d" for kind, _ in layer_kinds(model)),
        "the decoder should upsample with transposed convolutions (nn.ConvTranspose2d) mirroring the encoder",
        misconception="ae_decode.no_transposed_conv",
    )
    require_logits(out, "ae_decode.sigmoid_output")


def check_architecture(Autoencoder) -> None:
    """The autoencoder is of a sensible size and every parameter gets a gradient from forward."""
    torch.manual_seed(0)
    model = _make(Autoencoder, latent_dim=64)
    n_params = sum(p.numel() for p in model.parameters())
    require(
        n_params < 5_000_000,
        f"the model has {n_params:,} parameters; a few hundred thousand are plenty here",
        misconception="ae_model.too_large",
    )
    out = model(torch.rand(4, 1, 28, 28))
    out.sum().backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    require(
        not dead,
        f"these parameters get no gradient from forward: {', '.join(dead[:4])}: every layer "
        f"you create should be used in encode or decode",
        misconception="ae_model.unused_layers",
    )


def check_forward(Autoencoder) -> None:
    """forward maps (B, 1, 28, 28) images to logits of the same shape, equal to decode(encode(x))."""
    torch.manual_seed(0)
    model = _make(Autoencoder, latent_dim=64).eval()
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        out = model(x)
        expected = model.decode(model.encode(x))
    require(
        isinstance(out, torch.Tensor) and tuple(out.shape) == (3, 1, 28, 28),
        f"forward should return logits of shape (3, 1, 28, 28); got {getattr(out, 'shape', type(out))}",
        misconception="ae_forward.shape",
    )
    require(
        close(out, expected), "forward(x) should be decode(encode(x))", misconception="ae_forward.not_decode_encode"
    )


def check_ae_loss(ae_loss) -> None:
    """ae_loss(x, logits) is a 0-dim tensor: the Bernoulli NLL summed over pixels, averaged over the batch."""
    torch.manual_seed(0)
    x = torch.rand(5, 1, 28, 28)
    logits = torch.randn(5, 1, 28, 28) * 2
    loss = ae_loss(x, logits)
    require(
        isinstance(loss, torch.Tensor) and loss.dim() == 0,
        "ae_loss should return a scalar tensor (0-dim)",
        misconception="ae_loss.not_scalar",
    )
    expected = ref.recon_oracle(x, logits).mean()
    per_pixel = expected / (28 * 28)
    refuse(loss, [
        (per_pixel, "ae_loss averages over pixels: sum the Bernoulli negative log-likelihood over the 784 pixels "
                    "of an image, then average over the batch", "ae_loss.pixel_mean"),
        (expected * 5, "ae_loss sums over the batch: average over images so the loss does not grow with the batch "
                       "size", "ae_loss.batch_sum"),
    ])  # fmt: skip
    require(
        close(ae_loss(torch.cat([x, x]), torch.cat([logits, logits])), loss, rtol=1e-4),
        "ae_loss changes when the same batch is repeated twice: average over the batch",
        misconception="ae_loss.batch_dependent",
    )
    require(
        close(loss, expected, rtol=1e-4),
        "ae_loss is not the binary cross-entropy of the logits (summed over pixels, averaged over "
        "the batch): are you passing logits to a function that expects probabilities, or the "
        "arguments in the wrong order?",
        misconception="ae_loss.wrong",
    )


def check_train_autoencoder(train_autoencoder, namespace=None) -> None:
    """train_autoencoder trains a reference model in training mode and returns one finite mean loss per epoch."""
    torch.manual_seed(0)
    model = Recorder(ref.TinyAE())
    model.eval()  # the training loop must switch to training mode itself
    x = toy_images(256)
    before = [p.detach().clone() for p in model.parameters()]
    with swapped(namespace, ae_loss=ref.ae_loss):
        history = train_autoencoder(model, x, num_epochs=4, batch_size=64, lr=3e-3)
    require(
        isinstance(history, (list, tuple)) and len(history) == 4,
        f"train_autoencoder should return a list with one mean loss per epoch (4 here); got {history!r:.80}",
        misconception="train_ae.history_format",
    )
    losses = [float(v) for v in history]
    require(
        all(torch.isfinite(torch.tensor(losses))),
        "the losses returned are not all finite",
        misconception="train_ae.not_finite",
    )
    # strict=False: a loop that adds parameters to the model is judged on the ones it was given
    changed = any(not torch.equal(b, p.detach()) for b, p in zip(before, model.parameters(), strict=False))
    require(
        changed, "no parameter changed: call optimizer.step() after loss.backward()", misconception="train_ae.no_step"
    )
    require(
        model.calls and all(train and grad for _, train, grad in model.calls),
        "the model must be in training mode (model.train()) with gradients enabled while it trains",
        misconception="train_ae.not_training_mode",
    )
    require(
        losses[-1] < 0.9 * losses[0],
        "the loss does not fall over 4 epochs on a tiny data set: check zero_grad/backward/step order, "
        "that the optimizer holds model.parameters(), and that each epoch visits all batches",
        misconception="train_ae.loss_not_falling",
    )
    require(
        len(model.calls) >= 4 * 4,
        "each epoch should go over every minibatch (4 batches of 64 here)",
        misconception="train_ae.skips_batches",
    )


def check_sample_autoencoder(sample_autoencoder) -> None:
    """sample_autoencoder decodes standard-normal codes in eval mode without gradients, into images in [0, 1]."""
    torch.manual_seed(0)
    latent_dim = 16

    class Probe(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(latent_dim, 28 * 28)
            self.codes = []
            self.calls = []

        def decode(self, z):
            self.codes.append(z.detach())
            self.calls.append((self.training, torch.is_grad_enabled()))
            return self.lin(z).view(-1, 1, 28, 28) * 5

        def forward(self, x):  # pragma: no cover - sampling should decode, not run forward
            raise Mistake(
                "sampling should call model.decode on codes drawn from N(0, I), not model(x)",
                misconception="sample_ae.calls_forward",
            )

    model = Probe()
    images = sample_autoencoder(model, 2000, latent_dim=latent_dim)
    require(
        isinstance(images, torch.Tensor) and tuple(images.shape) == (2000, 1, 28, 28),
        f"2000 samples should have shape (2000, 1, 28, 28); got {getattr(images, 'shape', type(images))}",
        misconception="sample_ae.shape",
    )
    require(
        float(images.min()) >= 0 and float(images.max()) <= 1,
        "samples should be images in [0, 1]: apply torch.sigmoid to the decoder's logits",
        misconception="sample_ae.no_sigmoid",
    )
    require(
        not images.requires_grad and all(not grad for _, grad in model.calls),
        "sample without tracking gradients (torch.no_grad()): nothing is trained here",
        misconception="sample_ae.tracks_gradients",
    )
    require(
        all(not train for train, _ in model.calls),
        "put the model in evaluation mode (model.eval()) before sampling",
        misconception="sample_ae.not_eval_mode",
    )
    z = torch.cat(model.codes)
    require(
        tuple(z.shape) == (2000, latent_dim),
        f"decode should get 2000 codes of size {latent_dim}; got {tuple(z.shape)}",
        misconception="sample_ae.code_shape",
    )
    tol = 5 / (z.numel() ** 0.5)
    require(
        abs(float(z.mean())) < tol and abs(float(z.std()) - 1) < 2 * tol,
        "the codes you decode do not look like draws from N(0, I): use torch.randn(num_samples, latent_dim)",
        misconception="sample_ae.not_standard_normal",
    )
