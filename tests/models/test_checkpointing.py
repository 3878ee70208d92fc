"""Activation checkpointing: same gradients as the plain network."""

import torch

from p3d_lightning.models.checkpointing import enable_activation_checkpointing


def test_activation_checkpointing_same_gradients():
    from p3d_lightning.models import create_model

    torch.manual_seed(0)
    net = create_model("p3d_tiny", num_classes=3, dropout=0.0).train()
    ck = create_model("p3d_tiny", num_classes=3, dropout=0.0).train()
    ck.load_state_dict(net.state_dict())
    assert enable_activation_checkpointing(ck) == 4
    x = torch.randn(2, 3, 16, 16, 16)
    net(x).sum().backward()
    ck(x).sum().backward()
    g1 = net.fc.weight.grad
    g2 = ck.fc.weight.grad
    torch.testing.assert_close(g1, g2, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(net.conv1.weight.grad, ck.conv1.weight.grad, rtol=1e-3, atol=1e-5)
