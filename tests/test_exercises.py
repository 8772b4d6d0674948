"""hncam_utils.exercises: the solutions pass their checks, wrong answers fail with a useful message, an
unfinished stub gets a note instead of an error (so the notebook still runs top to bottom)."""

import pytest
import torch

from hncam_utils.exercises import EXERCISES, check, show_solution, solution


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_the_solutions_pass(name, capsys):
    assert check(name, solution(name)) is True
    assert "correct" in capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_a_stub_gets_a_note_not_an_error(name, capsys):
    def stub(*args):
        raise NotImplementedError

    assert check(name, stub) is False
    assert "not done yet" in capsys.readouterr().out


def test_wrong_answers_fail_with_the_case_and_a_hint():
    def select_with_label(cams, targets, k):  # forgets to exclude the label
        return cams.sum(dim=(2, 3)).topk(k, dim=1).indices

    with pytest.raises(AssertionError, match="never pick the label"):
        check("select", select_with_label)

    def mse_sum(cams, targets, k):  # sums instead of averaging
        return solution("hnc_mse")(cams, targets, k) * cams.shape[-1] * cams.shape[-2]

    with pytest.raises(AssertionError, match="divide by"):
        check("hnc_mse", mse_sum)

    def kd_divided_by_k(cams, targets, k, T=1.0):
        return solution("hnc_kd")(cams, targets, k, T) / k

    with pytest.raises(AssertionError, match="not by k"):
        check("hnc_kd", kd_divided_by_k)

    def kd_ignores_temperature(cams, targets, k, T=1.0):
        return solution("hnc_kd")(cams, targets, k, 1.0)

    with pytest.raises(AssertionError, match="T = 0.5"):
        check("hnc_kd", kd_ignores_temperature)


def test_wrong_focal_and_noise_answers_fail_with_a_hint():
    def focal_without_weight(logits, targets, gamma):  # plain cross-entropy
        return torch.nn.functional.cross_entropy(logits, targets)

    with pytest.raises(AssertionError, match="gamma = 0.5"):
        check("focal", focal_without_weight)

    def noise_may_keep_the_class(labels, rate, num_classes, generator):  # redraws among all C classes
        flip = torch.rand(labels.shape, generator=generator) < rate
        return torch.where(flip, torch.randint(0, num_classes, labels.shape, generator=generator), labels)

    with pytest.raises(AssertionError, match="never be the true class"):
        check("symmetric_noise", noise_may_keep_the_class)

    def noise_without_generator(labels, rate, num_classes, generator):  # ignores the seed
        return solution("symmetric_noise")(labels, rate, num_classes, torch.Generator().manual_seed(7))

    with pytest.raises(AssertionError, match="two generator seeds"):
        check("symmetric_noise", noise_without_generator)


def test_show_solution_prints_code_and_unknown_names_are_named(capsys):
    show_solution("hnc_kd")
    assert "log_softmax" in capsys.readouterr().out
    with pytest.raises(KeyError, match="select"):
        check("selection", lambda *a: torch.zeros(1))
