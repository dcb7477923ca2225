"""Settings of the intrinsic curiosity module (ICM)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class ICMConfig:
    """Curiosity of the plan's phase A.3: ``r = 0.9 r_ext + 0.1 r_int``, intrinsic share <= 10%."""

    enabled: bool = False
    """Add the ICM's intrinsic reward to the environment's reward and train the ICM with SAC."""
    eta: float = 0.01
    """Scale of the intrinsic reward: ``eta * forward-model error``."""
    beta: float = 0.2
    """Weight of the forward loss: ``(1 - beta) * inverse + beta * forward``."""
    extrinsic_weight: float = 0.9
    """Weight of the environment's reward in the mixed reward."""
    intrinsic_weight: float = 0.1
    """Weight of the intrinsic reward in the mixed reward (before the cap)."""
    intrinsic_cap: float = 0.10
    """Largest share of the mixed reward's magnitude the intrinsic part may take, per batch."""
    feature_dim: int = 64
    """Width of the ICM's state encoding (the forward model predicts it)."""
    hidden_size: int = 256
    """Width of the hidden layers of the encoder, forward and inverse models."""

    def __post_init__(self) -> None:
        if self.eta < 0.0:
            raise ValueError(f"intrinsic_curiosity.eta must be >= 0, got {self.eta}")
        if not 0.0 <= self.beta <= 1.0:
            raise ValueError(f"intrinsic_curiosity.beta must be in [0, 1], got {self.beta}")
        if self.extrinsic_weight < 0.0 or self.intrinsic_weight < 0.0:
            raise ValueError("intrinsic_curiosity weights must be >= 0")
        if not 0.0 <= self.intrinsic_cap < 1.0:
            raise ValueError(
                f"intrinsic_curiosity.intrinsic_cap must be in [0, 1), got {self.intrinsic_cap}"
            )
        if self.feature_dim < 1 or self.hidden_size < 1:
            raise ValueError("intrinsic_curiosity.feature_dim and hidden_size must be >= 1")
