import torch

from bindspace.detect.boxes import box_iou, generalized_iou, nms


def test_iou_of_known_boxes():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [2.0, 2.0, 4.0, 4.0], [0.0, 0.0, 2.0, 2.0]])
    # overlap 1 of union 4 + 4 - 1 = 7; touching corners share nothing; a box with itself is 1
    assert torch.allclose(box_iou(a, b), torch.tensor([[1 / 7, 0.0, 1.0]]))


def test_generalized_iou_penalises_distance_between_disjoint_boxes():
    a = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]])
    b = torch.tensor([[2.0, 0.0, 3.0, 1.0], [0.0, 0.0, 1.0, 1.0]])
    # disjoint: IoU 0, hull 3, union 2 -> 0 - 1/3; identical: 1
    assert torch.allclose(generalized_iou(a, b), torch.tensor([-1 / 3, 1.0]))


def test_nms_keeps_the_best_of_overlapping_boxes_and_every_separate_one():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    scores = torch.tensor([0.5, 0.9, 0.1])
    assert nms(boxes, scores, 0.5).tolist() == [1, 2]
    assert sorted(nms(boxes, scores, 0.9).tolist()) == [0, 1, 2]  # IoU 0.81 is below 0.9: both stay
