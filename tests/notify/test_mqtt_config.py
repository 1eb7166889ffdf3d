"""The MQTT settings: defaults, one-line errors, and a password that never shows."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from stream_detect.config import _format_error
from stream_detect.notify.mqtt_config import MqttConfig

PASSWORD = "correct-horse-battery-staple"


def test_defaults() -> None:
    config = MqttConfig(host="broker.local")
    assert (config.port, config.topic_prefix, config.discovery_prefix) == (1883, "stream-detect", "homeassistant")
    assert config.discovery and config.qos_events == 1 and not config.tls
    assert config.effective_client_id().startswith("stream-detect-")
    assert MqttConfig(host="b", client_id="mine").effective_client_id() == "mine"


def test_the_password_is_in_no_repr_str_or_dump() -> None:
    config = MqttConfig(host="broker.local", username="sd", password=PASSWORD)
    assert config.password is not None and config.password.get_secret_value() == PASSWORD
    for shown in (repr(config), str(config), config.model_dump_json(), str(config.model_dump())):
        assert PASSWORD not in shown


@pytest.mark.parametrize(("data", "message"), [
    ({"host": "b", "password": PASSWORD}, "a password needs a username"),
    ({"host": "b", "username": "sd", "password": PASSWORD, "port": 0}, "greater than or equal to 1"),
    ({"host": "b", "username": "sd", "password": PASSWORD, "ca_file": "ca.pem"}, "set tls: true"),
    ({"host": "b", "username": "sd", "password": PASSWORD, "tls": "maybe"}, "valid boolean"),
    ({"host": "b", "username": "sd", "password": PASSWORD, "pasword": PASSWORD}, "Extra inputs"),
    ({"host": "b", "username": "sd", "password": [PASSWORD]}, "valid string"),
])
def test_errors_name_the_problem_and_never_the_password(data: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        MqttConfig.model_validate(data)
    assert message in str(caught.value)
    assert PASSWORD not in str(caught.value)
    # The one line the configuration loader makes of it, the way a user sees it.
    line = _format_error(caught.value, "config.yaml")
    assert "\n" not in line and PASSWORD not in line


@pytest.mark.parametrize("prefix", ["", "/a", "a/", "a//b", "a/+/b", "a/#", "$SYS/x", "x\x00"])
def test_prefixes_that_are_not_plain_topic_levels_are_refused(prefix: str) -> None:
    for key in ("topic_prefix", "discovery_prefix"):
        with pytest.raises(ValidationError, match=key):
            MqttConfig.model_validate({"host": "b", key: prefix})


def test_prefixes_may_have_several_levels() -> None:
    assert MqttConfig(host="b", topic_prefix="home/cameras").topic_prefix == "home/cameras"


@pytest.mark.parametrize("host", ["mqtt://b", "user@b", "b/x", "b c", ""])
def test_a_host_is_a_name_or_address_only(host: str) -> None:
    with pytest.raises(ValidationError, match="host"):
        MqttConfig(host=host)
