"""Property: any override string either gives a valid config or a LitGenError, never a crash."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lit_gen.config import RunConfig, load_config
from lit_gen.errors import LitGenError

KEYS = st.sampled_from([
    "model.beta", "model.latent_dim", "model.hidden_dims", "model.likelihood", "model.name", "model",
    "data.batch_size", "data.name", "data.image_size", "trainer.max_epochs", "trainer.precision",
    "run.num_samples", "logger.mode", "seed", "name", "model.nope", "x.y.z", "",
])
VALUES = st.one_of(
    st.text(max_size=12),
    st.integers(-5, 10**6).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(["[1, 2]", "{'beta': 0.5}", "{'beta': [", "null", "True", "[a", "{}", "()", "'quoted'"]),
)
OVERRIDE = st.one_of(
    st.tuples(KEYS, VALUES).map(lambda kv: [f"{kv[0]}={kv[1]}"]),
    st.tuples(KEYS, VALUES).map(lambda kv: [f"--{kv[0]}={kv[1]}"]),
    st.tuples(KEYS, VALUES).map(lambda kv: [f"--{kv[0]}", kv[1]]),
    st.text(max_size=20).map(lambda s: [s]),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(OVERRIDE, max_size=3))
def test_random_overrides_give_a_config_or_a_lit_gen_error(groups):
    args = [arg for group in groups for arg in group]
    try:
        cfg = load_config("configs/vae_digits.yaml", args)
    except LitGenError:
        return
    assert isinstance(cfg, RunConfig)
