import numpy as np
import pytest

from scriptlab.metrics import confusion, group_accuracy


def test_confusion_counts_by_hand():
    c = confusion([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2], 3)
    assert c.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    with pytest.raises(ValueError, match="same shape"):
        confusion([0, 1], [0], 2)


def test_group_accuracy_by_hand():
    acc = group_accuracy([0, 1, 1, 0], [0, 1, 0, 1], [2, 2, 0, 0], ["a", "b", "c"])
    assert acc == {"a": (0.0, 2), "c": (1.0, 2)}
    assert np.isclose(sum(a * n for a, n in acc.values()) / 4, 0.5)
