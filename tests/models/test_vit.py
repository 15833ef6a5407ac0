"""ViT encoders (models/vit.py) and the MAE masking / decoder (models/mae.py)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import timm
import torch

from mec_eval.models import BACKBONES, build_backbone
from mec_eval.models.mae import MaskedAutoencoder, patchify, random_masking
from mec_eval.models.vit import ViTEncoder, sincos_2d, vit_spec


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_backbone("vit_tiny_p4").eval()


def test_registry_names_and_widths():
    for name, dim, patches in (("vit_tiny", 192, 196), ("vit_small", 384, 196), ("vit_base", 768, 196),
                               ("vit_large", 1024, 196), ("vit_tiny_p4", 192, 64), ("vit_small_p4", 384, 64)):
        assert name in BACKBONES
        with torch.device("meta"):
            model = build_backbone(name)
        assert model.feature_dim == dim and model.num_patches == patches
    with torch.device("meta"):
        assert len(build_backbone("vit_large").blocks) == 24


def test_same_names_and_features_as_timm():
    """Our ViT-Ti/16 has exactly timm's VisionTransformer(num_classes=0) state dict; timm weights give timm's CLS."""
    ref = timm.create_model("vit_tiny_patch16_224", num_classes=0).eval()
    ours = build_backbone("vit_tiny").eval()
    assert set(ours.state_dict()) == set(ref.state_dict())
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        expected = ref.forward_head(ref.forward_features(x), pre_logits=True)
        torch.testing.assert_close(ours(x), expected, rtol=0, atol=1e-5)


def test_forward_is_the_cls_feature(tiny):
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        feats = tiny(x)
        tokens = tiny.forward_tokens(x)
    assert feats.shape == (3, 192) and tokens.shape == (3, 65, 192)
    torch.testing.assert_close(feats, tokens[:, 0])


def test_sincos_table_matches_the_closed_form():
    """Row 1 + r*W + c: channels [0, D/2) encode the column c, [D/2, D) the row r; sin then cos; CLS row zero."""
    dim, grid = 16, (3, 5)
    table = sincos_2d(dim, grid)[0].numpy()
    omega = 1.0 / 10000 ** (np.arange(dim // 4) / (dim / 4))
    assert table.shape == (1 + 15, dim) and not table[0].any()
    for r in range(3):
        for c in range(5):
            row = table[1 + r * 5 + c]
            np.testing.assert_allclose(row, np.concatenate([np.sin(c * omega), np.cos(c * omega),
                                                            np.sin(r * omega), np.cos(r * omega)]), atol=1e-6)


def test_pos_embed_is_frozen_sincos(tiny):
    assert not tiny.pos_embed.requires_grad
    torch.testing.assert_close(tiny.pos_embed, sincos_2d(192, (8, 8)))
    assert tiny.cls_token.requires_grad


def test_kept_patch_order_does_not_matter(tiny):
    """Positions are added before the gather, and attention is permutation-equivariant: any order of all
    patches gives the full forward's CLS token; keeping a subset changes it."""
    x = torch.randn(2, 3, 32, 32)
    perm = torch.stack([torch.randperm(64) for _ in range(2)])
    with torch.no_grad():
        full = tiny(x)
        torch.testing.assert_close(tiny.forward_tokens(x, perm)[:, 0], full, rtol=1e-4, atol=1e-5)
        subset = tiny.forward_tokens(x, perm[:, :16])
    assert subset.shape == (2, 17, 192)
    assert not torch.allclose(subset[:, 0], full, atol=1e-3)


def test_other_resolution_resamples_positions(tiny):
    with torch.no_grad():
        assert tiny(torch.randn(1, 3, 48, 48)).shape == (1, 192)
    with pytest.raises(ValueError, match="multiple of the patch size 4"):
        tiny(torch.randn(1, 3, 30, 30))


def test_width_must_suit_the_2d_table():
    with pytest.raises(ValueError, match="divisible by 4"):
        sincos_2d(18, (2, 2))


def test_random_masking_ratio_and_per_sample_draws():
    torch.manual_seed(0)
    m = random_masking(8, 64, 0.75)
    assert m.ids_keep.shape == (8, 16)
    assert (m.mask.sum(1) == 48).all()  # exactly 75 % removed in every sample
    # The kept ids are the unmasked positions, and ids_restore undoes the shuffle.
    for b in range(8):
        assert set(m.ids_keep[b].tolist()) == set(torch.nonzero(m.mask[b] == 0).flatten().tolist())
    ids_shuffle = torch.argsort(m.ids_restore, dim=1)
    torch.testing.assert_close(torch.gather(ids_shuffle, 1, m.ids_restore), torch.arange(64).expand(8, -1))
    assert len({tuple(sorted(row.tolist())) for row in m.ids_keep}) == 8  # each sample its own draw
    torch.manual_seed(0)
    torch.testing.assert_close(random_masking(8, 64, 0.75).ids_keep, m.ids_keep)  # global RNG: replayable
    assert random_masking(2, 196, 0.75).ids_keep.shape == (2, 49)  # int(196 * 0.25)
    with pytest.raises(ValueError, match="mask ratio"):
        random_masking(2, 64, 1.0)


def test_patchify_order_by_hand():
    images = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    patches = patchify(images, 2)
    assert patches.shape == (2, 4, 12)
    # Patch (row 1, column 0) of image 1: pixels (i, j) in rows 2-3, columns 0-1, channel last.
    expected = [images[1, c, 2 + i, j].item() for i in range(2) for j in range(2) for c in range(3)]
    assert patches[1, 2].tolist() == expected
    with pytest.raises(ValueError):
        patchify(torch.zeros(1, 3, 5, 4), 2)


def test_masked_autoencoder_shapes_and_mae_names():
    torch.manual_seed(0)
    net = MaskedAutoencoder(ViTEncoder(vit_spec("tiny", 32, 4)), 0.75, 64, 1, 4)
    out = net(torch.randn(2, 3, 32, 32))
    assert out.pred.shape == out.target.shape == (2, 64, 48)
    assert out.mask.shape == (2, 64) and out.cls.shape == (2, 192)
    names = set(net.decoder.state_dict())
    assert {"mask_token", "decoder_pos_embed", "decoder_embed.weight", "decoder_pred.bias"} <= names
    assert all(n == "mask_token" or n.startswith("decoder_") for n in names)
    with pytest.raises(ValueError, match="32 px"):
        net(torch.randn(1, 3, 64, 64))


def test_masked_forward_cost_is_about_a_quarter():
    """FLOP count of the encoder on 16 + 1 of 64 + 1 tokens (torch's counter, no timing)."""
    from torch.utils.flop_counter import FlopCounterMode

    enc = ViTEncoder(vit_spec("tiny", 32, 4))
    x = torch.randn(1, 3, 32, 32)
    flops = []
    for ids in (None, torch.arange(16)[None]):
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            enc.forward_tokens(x, ids)
        flops.append(counter.get_total_flops())
    assert 0.2 < flops[1] / flops[0] < 0.3
    assert math.isclose(flops[1] / flops[0], 17 / 65, rel_tol=0.1)
