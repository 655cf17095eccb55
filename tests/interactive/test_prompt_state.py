"""Specification of PromptState: the prompts, chosen mask and undo/redo history behind the widget."""

import re

import numpy as np
import pytest

from sam_from_scratch.errors import SamInputError
from sam_from_scratch.interactive.prompt_state import PromptState


def fake_prediction(n=3, h=4, w=5, best=1, seed=0):
    """masks (n, h, w), scores with the maximum at `best`, logits (n, 256, 256) with mask k filled with k."""
    rng = np.random.default_rng(seed)
    masks = rng.random((n, h, w)) > 0.5
    scores = np.full(n, 0.5, dtype=np.float32)
    scores[best] = 0.9
    logits = np.stack([np.full((256, 256), float(k), dtype=np.float32) for k in range(n)])
    return masks, scores, logits


def test_a_new_state_is_empty_and_has_nothing_to_undo():
    state = PromptState()
    assert state.points == () and state.labels == () and state.box is None
    assert state.mask is None and state.chosen_index is None
    assert not state.can_undo and not state.can_redo
    assert state.undo() is False and state.redo() is False


def test_points_keep_their_order_and_labels():
    state = PromptState()
    state.add_point(10, 20)
    state.add_point(30.5, 40, positive=False)
    assert state.points == ((10.0, 20.0), (30.5, 40.0))
    assert state.labels == (1, 0)


def test_predictor_kwargs_have_the_official_shapes_and_dtypes():
    state = PromptState()
    state.add_point(1, 2)
    state.add_point(3, 4, positive=False)
    state.set_box(5, 6, 7, 8)
    kwargs = state.predictor_kwargs(multimask_output=False)
    assert kwargs["point_coords"].shape == (2, 2) and kwargs["point_coords"].dtype == np.float32
    np.testing.assert_array_equal(kwargs["point_labels"], [1, 0])
    np.testing.assert_array_equal(kwargs["box"], [5, 6, 7, 8])
    assert kwargs["multimask_output"] is False
    assert kwargs["mask_input"] is None


def test_predictor_kwargs_without_points_pass_none_not_empty_arrays():
    state = PromptState()
    state.set_box(0, 0, 3, 3)
    kwargs = state.predictor_kwargs()
    assert kwargs["point_coords"] is None and kwargs["point_labels"] is None


def test_a_box_drawn_from_bottom_right_to_top_left_is_normalised():
    state = PromptState()
    state.set_box(50, 60, 10, 20)
    assert state.box == (10.0, 20.0, 50.0, 60.0)


def test_undo_and_redo_walk_the_history_both_ways():
    state = PromptState()
    state.add_point(1, 1)
    state.add_point(2, 2, positive=False)
    assert state.undo() is True
    assert state.points == ((1.0, 1.0),)
    assert state.undo() is True
    assert state.points == ()
    assert state.redo() is True and state.redo() is True
    assert state.points == ((1.0, 1.0), (2.0, 2.0)) and state.labels == (1, 0)


def test_a_new_prompt_after_undo_discards_the_redo_branch():
    state = PromptState()
    state.add_point(1, 1)
    state.undo()
    state.add_point(9, 9)
    assert not state.can_redo
    assert state.points == ((9.0, 9.0),)


def test_undo_restores_the_previous_prediction_without_predicting_again():
    state = PromptState()
    state.add_point(1, 1)
    masks, scores, logits = fake_prediction(seed=1)
    state.record_prediction(masks, scores, logits)
    state.add_point(2, 2, positive=False)
    state.record_prediction(*fake_prediction(seed=2))
    state.undo()
    np.testing.assert_array_equal(state.mask, masks[1])


def test_the_highest_predicted_iou_is_chosen_by_default_and_the_learner_can_pick_another():
    state = PromptState()
    state.add_point(1, 1)
    masks, scores, logits = fake_prediction(best=2)
    state.record_prediction(masks, scores, logits)
    assert state.chosen_index == 2
    state.choose(0)
    assert state.chosen_index == 0
    np.testing.assert_array_equal(state.mask, masks[0])


def test_choose_rejects_an_index_that_is_not_a_candidate():
    state = PromptState()
    with pytest.raises(ValueError, match="no candidate masks yet"):
        state.choose(0)
    state.add_point(1, 1)
    state.record_prediction(*fake_prediction(n=1, best=0))
    with pytest.raises(SamInputError, match=r"^index: expected an integer in \[0, 0\] \(1 candidate mask, numbered "
                                            r"from 0\), got int 2\.$"):
        state.choose(2)


@pytest.mark.parametrize("index", [1.7, True, "1", None, -1, 3])
def test_choose_takes_only_an_integer_of_a_candidate(index):
    state = PromptState()
    state.add_point(1, 1)
    state.record_prediction(*fake_prediction(n=3, best=0))
    with pytest.raises(SamInputError, match=r"^index: expected an integer in \[0, 2\] \(3 candidate masks, numbered "
                                            r"from 0\), got " + type(index).__name__):
        state.choose(index)
    assert state.chosen_index == 0  # the best one, still
    state.choose(np.int64(2))  # numpy integers are integers
    assert state.chosen_index == 2 and type(state.current.chosen) is int


def test_a_new_prompt_refines_with_the_logits_of_the_chosen_mask():
    state = PromptState(refine=True)
    state.add_point(1, 1)
    assert state.predictor_kwargs()["mask_input"] is None  # the first click has nothing to refine
    state.record_prediction(*fake_prediction(best=1))
    state.choose(2)
    state.add_point(2, 2, positive=False)
    mask_input = state.predictor_kwargs()["mask_input"]
    assert mask_input.shape == (1, 256, 256)
    assert np.all(mask_input == 2.0)  # the logits of mask 2, the one the learner picked


def test_without_refine_no_mask_input_is_passed():
    state = PromptState(refine=False)
    state.add_point(1, 1)
    state.record_prediction(*fake_prediction())
    state.add_point(2, 2)
    assert state.predictor_kwargs()["mask_input"] is None


def test_removing_prompts_drops_the_old_logits():
    state = PromptState(refine=True)
    state.add_point(1, 1)
    state.set_box(0, 0, 4, 4)
    state.record_prediction(*fake_prediction())
    state.clear_box()
    assert state.predictor_kwargs()["mask_input"] is None
    assert state.points == ((1.0, 1.0),)


def test_clear_points_keeps_the_box_and_clear_box_keeps_the_points():
    state = PromptState()
    state.add_point(1, 1)
    state.set_box(0, 0, 4, 4)
    state.clear_points()
    assert state.points == () and state.box == (0.0, 0.0, 4.0, 4.0)
    state.undo()
    state.clear_box()
    assert state.points == ((1.0, 1.0),) and state.box is None


def test_reset_empties_everything_and_can_be_undone():
    state = PromptState()
    state.add_point(1, 1)
    state.set_box(0, 0, 4, 4)
    state.reset()
    assert state.points == () and state.box is None and state.mask is None
    state.undo()
    assert state.points == ((1.0, 1.0),) and state.box == (0.0, 0.0, 4.0, 4.0)


def test_clearing_what_is_already_empty_adds_no_undo_step():
    state = PromptState()
    state.clear_points()
    state.clear_box()
    state.reset()
    assert not state.can_undo


def test_the_history_is_bounded():
    state = PromptState(max_history=3)
    for i in range(10):
        state.add_point(i, i)
    undone = 0
    while state.undo():
        undone += 1
    assert undone == 3
    assert len(state.points) == 7


@pytest.mark.parametrize("bad, shown", [(float("nan"), "float nan"), (float("inf"), "float inf"), ("a", "str 'a'"),
                                        (None, "NoneType None"), (True, "bool True")])
def test_points_must_be_finite_numbers(bad, shown):
    state = PromptState()
    with pytest.raises(SamInputError, match=rf"^x: expected a finite number \(pixels\), got {re.escape(shown)}\.$"):
        state.add_point(bad, 1)
    with pytest.raises(SamInputError, match=r"^y: expected a finite number"):
        state.add_point(1, bad)
    assert not state.can_undo


def test_record_prediction_checks_that_the_shapes_agree():
    state = PromptState()
    state.add_point(1, 1)
    masks, scores, logits = fake_prediction(n=3)
    with pytest.raises(SamInputError, match=r"^scores: expected one predicted IoU per mask, numbers of shape \(3,\) "
                                            r"\(the same C as masks \(3, \d+, \d+\)\), got ndarray of shape \(2,\)"):
        state.record_prediction(masks, scores[:2], logits)


def test_record_prediction_refuses_masks_of_another_size_than_the_image():
    state = PromptState(image_size=(60, 80))
    state.add_point(1, 1)
    masks, scores, logits = fake_prediction(n=3, h=10, w=10)
    with pytest.raises(SamInputError, match=r"^masks: expected \(C, H, W\) = \(C, 60, 80\) \(the image's size\), got "
                                            r"ndarray of shape \(3, 10, 10\) and dtype bool\.$"):
        state.record_prediction(masks, scores, logits)
    assert state.prediction is None


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(masks=np.full((3, 4, 5), 0.7, np.float32)),
         r"^masks: expected \(C, H, W\) = \(C, 4, 5\) masks of bools or of 0/1 integers, got ndarray of shape "
         r"\(3, 4, 5\) and dtype float32\. Probabilities or logits\?"),
        (dict(masks=np.ones((4, 5), bool)),
         r"^masks: expected \(C, H, W\) = \(C, 4, 5\) masks .*got ndarray of shape \(4, 5\)"),
        (dict(masks=np.ones((0, 4, 5), bool)),
         r"^masks: expected \(C, H, W\) = \(C, 4, 5\) masks .*, C >= 1, got ndarray of shape \(0, 4, 5\)"),
        (dict(scores=["a", "b", "c"]), r"^scores: expected one predicted IoU per mask, numbers of shape \(3,\) .*got list"),
        (dict(low_res_logits=np.zeros((3, 256), np.float32)), r"^low_res_logits: expected \(C, h, w\) float logits .*"
                                                              r"got ndarray of shape \(3, 256\)"),
        (dict(low_res_logits=np.zeros((3, 256, 256), bool)), r"^low_res_logits: expected \(C, h, w\) float logits"),
    ],
)
def test_record_prediction_names_the_argument_that_is_wrong(change, match):
    state = PromptState(image_size=(4, 5))
    state.add_point(1, 1)
    masks, scores, logits = fake_prediction(n=3)
    given = dict(masks=masks, scores=scores, low_res_logits=logits) | change
    with pytest.raises(SamInputError, match=match):
        state.record_prediction(**given)
    assert state.prediction is None


def test_record_prediction_takes_0_1_integer_masks_as_booleans():
    state = PromptState(image_size=(4, 5))
    masks, scores, logits = fake_prediction(n=3)
    state.record_prediction(masks.astype(np.uint8), scores, logits)
    assert state.prediction.masks.dtype == bool
    np.testing.assert_array_equal(state.prediction.masks, masks)


def test_positive_must_be_true_or_false():
    state = PromptState()
    with pytest.raises(SamInputError, match=r"^positive: expected True or False, got str 'no'\.$"):
        state.add_point(1, 1, positive="no")  # a non-empty string would have made a positive point
    assert not state.can_undo and state.points == ()
    state.add_point(1, 1, positive=np.bool_(False))
    state.add_point(2, 2, positive=1)
    assert state.labels == (0, 1)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(refine="no"), r"^refine: expected True or False, got str 'no'\.$"),
        (dict(max_history="5"), r"^max_history: expected a positive integer, got str '5'\.$"),
        (dict(max_history=2.5), r"^max_history: expected a positive integer, got float 2\.5\.$"),
        (dict(max_history=0), r"^max_history: expected a positive integer, got int 0\.$"),
        (dict(image_size=100), r"^image_size: expected \(H, W\), two positive integers, or None, got int 100\. "
                               r"For an image array: image\.shape\[:2\]\.$"),
        (dict(image_size=(96, 128, 3)), r"^image_size: expected \(H, W\), .*got tuple \(96, 128, 3\)"),
        (dict(image_size=(96.0, 128)), r"^image_size: expected \(H, W\), .*got tuple \(96\.0, 128\)"),
        (dict(image_size=(0, 128)), r"^image_size: expected \(H, W\), .*got tuple \(0, 128\)"),
    ],
)
def test_bad_settings_are_named(kwargs, match):
    with pytest.raises(SamInputError, match=match):
        PromptState(**kwargs)


def test_image_size_may_be_a_list_or_numpy_integers():
    state = PromptState(image_size=[np.int64(96), 128])
    assert state.image_size == (96, 128)
    with pytest.raises(SamInputError, match=r"^x: expected a number in \[0, 128\]"):
        state.add_point(200, 10)
