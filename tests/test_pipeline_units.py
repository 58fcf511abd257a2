"""Unit tests of the pipeline's pure pieces: recognition batching, CTC decoding, detection resizing,
normalisation, the orientation rule. No model needed: these run in milliseconds."""

from __future__ import annotations

import numpy as np
import pytest

from server.pipeline.cls import decide
from server.pipeline.det import preprocess, resize_for_det
from server.pipeline.imageops import normalize
from server.pipeline.rec import ctc_greedy_decode, padded_width, plan_batches
from server.pipeline.types import ClsSettings, DetSettings, RecSettings

BUCKETED = RecSettings(width_buckets=(96, 160, 320, 640), batch_size=3)
REFERENCE = RecSettings(width_buckets=(), batch_size=3)


def test_padded_width_takes_the_narrowest_bucket_that_holds_the_crop() -> None:
    assert padded_width(1, BUCKETED) == 96
    assert padded_width(96, BUCKETED) == 96
    assert padded_width(97, BUCKETED) == 160
    assert padded_width(640, BUCKETED) == 640


def test_padded_width_past_the_widest_bucket_rounds_up_to_the_nominal_width() -> None:
    assert padded_width(641, BUCKETED) == 960  # nominal width 320
    assert padded_width(961, BUCKETED) == 1280


def test_bucketed_batches_cover_every_crop_once_and_hold_only_what_fits() -> None:
    height = BUCKETED.image_shape[1]
    ratios = [0.5, 10.0, 2.0, 3.0, 1.0, 6.0, 2.5, 1.5, 30.0]
    batches = plan_batches(ratios, BUCKETED)
    seen = sorted(i for _, members in batches for i in members)
    assert seen == list(range(len(ratios)))
    for width, members in batches:
        assert len(members) in (1, BUCKETED.batch_size)
        for i in members:
            needed = int(np.ceil(height * ratios[i]))
            assert needed <= width
            assert width == padded_width(needed, BUCKETED)


def test_bucketed_batches_use_few_distinct_shapes() -> None:
    rng = np.random.default_rng(0)
    ratios = list(rng.uniform(0.5, 13.0, size=500))
    shapes = {(len(members), width) for width, members in plan_batches(ratios, BUCKETED)}
    # 4 buckets, each with full batches and single crops: at most 8 input shapes however many crops
    assert len({w for _, w in shapes}) <= 4
    assert {n for n, _ in shapes} <= {1, BUCKETED.batch_size}
    assert len(shapes) <= 8


def test_wide_buckets_get_fewer_crops_per_batch_within_the_width_budget() -> None:
    settings = RecSettings(width_buckets=(160, 480, 960, 1280), batch_size=6, max_batch_width=1920)
    ratios = [100 / 48] * 13 + [400 / 48] * 9 + [900 / 48] * 5 + [1200 / 48] * 2
    sizes: dict[int, list[int]] = {}
    for width, members in plan_batches(ratios, settings):
        sizes.setdefault(width, []).append(len(members))
    assert sizes == {160: [6, 6, 1], 480: [4, 4, 1], 960: [2, 2, 1], 1280: [1, 1]}


def test_reference_batching_pads_each_batch_to_its_widest_and_at_least_nominal() -> None:
    # sorted by ratio: 0 (1.0), 2 (2.0), 3 (9.0 -> 432 px), then 1 (12.5 -> 600 px)
    assert plan_batches([1.0, 12.5, 2.0, 9.0], REFERENCE) == [(432, [0, 2, 3]), (600, [1])]
    assert plan_batches([1.0, 2.0], REFERENCE) == [(320, [0, 1])]


def test_ctc_greedy_decode_collapses_repeats_and_drops_blanks() -> None:
    charset = ["<blank>", "a", "b", " "]
    steps = [1, 1, 0, 1, 2, 2, 0, 0, 3, 2]  # a a _ a b b _ _ ' ' b -> "aab b"
    probs = np.full((1, len(steps), len(charset)), 0.01, dtype=np.float32)
    for t, c in enumerate(steps):
        probs[0, t, c] = 0.9 if c else 0.97
    (text, score), = ctc_greedy_decode(probs, charset)
    assert text == "aab b"
    assert score == pytest.approx(0.9)


def test_ctc_greedy_decode_of_all_blanks_is_empty_with_zero_score() -> None:
    probs = np.zeros((2, 5, 3), dtype=np.float32)
    probs[:, :, 0] = 1.0
    assert ctc_greedy_decode(probs, ["<blank>", "x", "y"]) == [("", 0.0), ("", 0.0)]


@pytest.mark.parametrize(
    ("shape", "settings", "expected"),
    [
        ((1013, 463), DetSettings(limit_side_len=64, limit_type="min"), (1024, 448)),
        ((1013, 463), DetSettings(limit_side_len=736, limit_type="min"), (1600, 736)),
        ((3000, 1000), DetSettings(limit_side_len=960, limit_type="max"), (960, 320)),
        ((100, 9000), DetSettings(limit_side_len=64, limit_type="min", max_side_limit=4000), (32, 4000)),
        ((10, 10), DetSettings(limit_side_len=64, limit_type="min"), (64, 64)),
        ((3530, 2497), DetSettings(), (3520, 2496)),  # a native SROIE scan
        ((3530, 2497), DetSettings(max_side_limit=2000), (1984, 1408)),
    ],
)
def test_resize_for_det_gives_multiples_of_32_within_limits(
    shape: tuple[int, int], settings: DetSettings, expected: tuple[int, int]
) -> None:
    image = np.zeros((*shape, 3), dtype=np.uint8)
    resized = resize_for_det(image, settings)
    assert resized.shape[:2] == expected
    assert resized.shape[0] % 32 == 0 and resized.shape[1] % 32 == 0


def test_normalize_writes_into_a_batch_view_without_touching_the_padding() -> None:
    image = np.random.default_rng(1).integers(0, 256, size=(4, 5, 3), dtype=np.uint8)
    batch = np.zeros((2, 3, 4, 8), dtype=np.float32)
    normalize(image, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), out=batch[1, :, :, :5])
    expected = (image.transpose(2, 0, 1).astype(np.float32) / 255.0 - 0.5) / 0.5
    np.testing.assert_allclose(batch[1, :, :, :5], expected, atol=1e-6)
    assert not batch[0].any() and not batch[1, :, :, 5:].any()


def test_det_input_is_padded_to_the_multiple_with_zeros_and_the_valid_area_reported() -> None:
    image = np.full((1013, 463, 3), 255, dtype=np.uint8)
    batch, (h, w) = preprocess(image, DetSettings(limit_side_len=736, pad_multiple=256))
    assert (h, w) == (1600, 736)
    assert batch.shape == (1, 3, 1792, 768)
    assert np.allclose(batch[0, :, :h, :w], 1.0)  # white, normalised with mean = std = 0.5
    assert not batch[0, :, h:, :].any() and not batch[0, :, :, w:].any()


@pytest.mark.parametrize(
    "bad", [{"pad_multiple": 0}, {"pad_multiple": 48}, {"limit_type": "both"}, {"max_side_limit": 16}]
)
def test_det_settings_refuse_values_the_network_cannot_take(bad: dict) -> None:
    with pytest.raises(ValueError):
        DetSettings(**bad)


def _decide(p180: list[float], lengths: list[float] | None = None, **settings: object):
    p = np.asarray(p180, dtype=np.float32)
    return decide(1 - p, p, np.asarray(lengths or [1.0] * len(p), dtype=np.float32), ClsSettings(**settings))


def test_page_vote_keeps_an_upright_page_upright_and_rereads_the_lines_against_it() -> None:
    # Two upright lines, one the classifier calls upside down at 0.97: the page stays upright.
    orientation = _decide([0.01, 0.97, 0.02])
    assert orientation.page_angle == 0 and orientation.angles == [0, 0, 0] and orientation.doubtful == [1]


def test_page_vote_turns_an_upside_down_page_and_rereads_the_lines_against_it() -> None:
    orientation = _decide([0.99, 0.6, 0.1, 0.95])
    assert orientation.page_angle == 180 and orientation.angles == [180] * 4 and orientation.doubtful == [2]


def test_page_vote_is_weighted_by_line_length() -> None:
    # Three short words called upside down lose to two long lines called upright.
    orientation = _decide([0.99, 0.99, 0.99, 0.0, 0.0], lengths=[2, 2, 2, 10, 10])
    assert orientation.page_angle == 0 and orientation.doubtful == [0, 1, 2]


def test_a_tie_keeps_the_page_upright() -> None:
    assert _decide([0.5]).page_angle == 0 and _decide([0.8, 0.2]).page_angle == 0


def test_line_flip_thresh_turns_sure_lines_against_the_page_without_a_reread() -> None:
    orientation = _decide([0.0, 0.9995, 0.97, 0.0], line_flip_thresh=0.999)
    assert orientation.angles == [0, 180, 0, 0] and orientation.doubtful == [2]


def test_line_rule_turns_each_line_by_itself_above_thresh() -> None:
    orientation = _decide([0.95, 0.85, 0.1], orientation="line")
    assert orientation.angles == [180, 0, 0] and orientation.doubtful == []


@pytest.mark.parametrize("bad", [{"orientation": "auto"}, {"line_flip_thresh": 0.3}, {"reread_margin": 1.0},
                                 {"reread_min_score": 1.5}, {"labels": ("0", "90")}])
def test_cls_settings_refuse_values_the_orientation_rule_cannot_use(bad: dict) -> None:
    with pytest.raises(ValueError):
        ClsSettings(**bad)
