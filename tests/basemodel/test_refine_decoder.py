"""Stage 1b (the decoder refined on a frozen encoder) and the reader's round-trip training: what they may touch."""

from __future__ import annotations

import torch

from basemodel.models import make_vae
from basemodel.refine_decoder import DecoderRefinement, refine_decoder
from basemodel.train_reader import _round_trip, labelled_batch


def test_only_the_decoder_learns_so_the_latents_stay_as_the_unet_knows_them() -> None:
    torch.manual_seed(0)
    vae = make_vae()
    encoder = {name: p.detach().clone() for name, p in vae.encoder.named_parameters()}
    quant = {name: p.detach().clone() for name, p in vae.quant_conv.named_parameters()}
    decoder = {name: p.detach().clone() for name, p in vae.decoder.named_parameters()}
    refine_decoder(vae, DecoderRefinement(max_steps=2, batch_size=2, minutes=5.0))
    assert all(torch.equal(p, encoder[name]) for name, p in vae.encoder.named_parameters())
    assert all(torch.equal(p, quant[name]) for name, p in vae.quant_conv.named_parameters())
    assert any(not torch.equal(p, decoder[name]) for name, p in vae.decoder.named_parameters())
    assert not vae.training and not any(p.requires_grad for p in vae.parameters())


def test_the_round_trip_replaces_the_chosen_share_of_a_batch() -> None:
    torch.manual_seed(0)
    vae = make_vae().eval()
    images, _ = labelled_batch(range(4))
    generator = torch.Generator().manual_seed(0)
    assert torch.equal(_round_trip(images, vae, 0.0, generator), images)
    trips = _round_trip(images, vae, 1.0, generator)
    assert trips.shape == images.shape and trips.abs().max() <= 1.0
    assert all(not torch.equal(trip, image) for trip, image in zip(trips, images, strict=True))
