"""The job form and page for the RLHF stages: ppo's reward-model menu and
its own settings block, errors back on their inputs, stage charts."""
from __future__ import annotations

import pytest

from tests.jobs.conftest import TINY_SFT
from webapp.jobs.forms import config_fields
from webapp.jobs.models import Job
from webapp.registry.services import artifact_register

pytestmark = pytest.mark.django_db


@pytest.fixture
def preference(alice, make_dataset):
    rows = [{"prompt": "空气炸锅怎么样?", "chosen": "很好,推荐。", "rejected": "一般。"}] * 8
    return make_dataset(alice, "preference", rows=rows, name="pref")


@pytest.fixture
def reward(alice, base, roots):
    """A registry reward model (its files are the tiny base's plus the marker
    the CLI checks for)."""
    folder = roots.artifacts / "reward"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "reward_model.json").write_text('{"kind": "reward"}')
    return artifact_register(owner=alice, name="tiny-rm", architecture="BloomModel", kind="reward", folder=folder, parent=base)


def _ppo_post(base, data, **overrides):
    """What the browser submits: every input's default, a tiny run's values."""
    body = {"stage": "ppo", "base_artifact": base.pk, "dataset": data.pk, "queue": "gpu", "num_gpus": 0, "hostfile": ""}
    defaults = {key: default for key, (_, default) in config_fields("ppo").items()}
    for key, value in {**defaults, **TINY_SFT, "max_steps": 2}.items():
        if value is not None and value is not False and not isinstance(value, dict):
            body[f"config_{key}"] = value
    body.update({"config_ppo.prompt_length": 24, "config_ppo.response_length": 12, "config_ppo.kl_coef": 0.05,
                 "config_lora": '{"r": 4, "alpha": 8}', **overrides})
    return body


def test_the_ppo_form_has_a_reward_menu_and_its_own_settings(web, base, reward, preference) -> None:
    html = web.get("/jobs/new/?stage=ppo").content.decode()
    menu = html.split('name="reward_artifact"', 1)[1].split("</select>", 1)[0]
    assert f'value="{reward.pk}"' in menu and f'value="{base.pk}"' not in menu  # reward models only
    assert 'name="config_ppo.kl_coef"' in html and 'value="0.1"' in html  # the seed's kl_coef
    assert 'name="config_ppo.critic_learning_rate"' in html and 'value="9.65e-06"' in html  # actor lr default
    assert 'name="config_dpo.beta"' not in html and 'name="config_ppo"' not in html
    data_menu = html.split('name="dataset"', 1)[1].split("</select>", 1)[0]
    assert f'value="{preference.pk}"' in data_menu  # ppo reads the prompts of preference rows
    sft = web.get("/jobs/new/?stage=sft").content.decode()
    assert 'name="reward_artifact"' not in sft and "config_ppo." not in sft
    assert 'name="config_dpo.beta"' in web.get("/jobs/new/?stage=dpo").content.decode()


def test_a_ppo_post_stores_the_reward_model_and_nested_settings(web, alice, base, reward, preference) -> None:
    response = web.post("/jobs/new/", _ppo_post(base, preference, reward_artifact=reward.pk))
    assert response.status_code == 302, response.context["form"].errors
    job = Job.objects.get()
    assert (job.stage, job.reward_artifact, job.base_artifact) == ("ppo", reward, base)
    assert job.config["ppo"]["kl_coef"] == 0.05 and job.config["ppo"]["response_length"] == 12
    assert job.config["lora"] == {"r": 4, "alpha": 8}
    page = web.get(f"/jobs/{job.pk}/").content.decode()
    assert 'data-metric="reward_mean"' in page and 'data-metric="kl"' in page
    assert 'data-metric="reward_mean"' not in web.get(f"/jobs/new/?clone={job.pk}").content.decode()
    clone = web.get(f"/jobs/new/?clone={job.pk}").content.decode()
    assert 'name="config_ppo.kl_coef"' in clone and 'value="0.05"' in clone


def test_ppo_errors_go_back_on_their_inputs(web, base, reward, preference) -> None:
    missing = web.post("/jobs/new/", _ppo_post(base, preference)).content.decode()
    assert 'id="id_reward_artifact_error">stage ppo needs a reward model' in missing
    too_long = web.post("/jobs/new/", _ppo_post(base, preference, reward_artifact=reward.pk,
                                                **{"config_ppo.prompt_length": 60})).content.decode()
    assert 'id="id_config_ppo.prompt_length_error">' not in too_long  # a cross-field rule: on max_length
    assert 'id="id_config_max_length_error">max_length: 64 cannot hold ppo.prompt_length' in too_long
    bad = web.post("/jobs/new/", _ppo_post(base, preference, reward_artifact=reward.pk, **{"config_ppo.kl_coef": -1}))
    assert 'id="id_config_ppo.kl_coef_error">ppo.kl_coef: Input should be greater than or equal to 0' in bad.content.decode()
    assert not Job.objects.exists()
