"""TF Serving's model config file (`--model_config_file`): a text-format ModelServerConfig.

    model_config_list {
      config {
        name: "adclick"
        base_path: "gs://adclick-models/serving/adclick"
        model_platform: "tensorflow"
        model_version_policy { specific { versions: 1795273561 versions: 1795360000 } }
        version_labels { key: "stable" value: 1795273561 }
        version_labels { key: "canary" value: 1795360000 }
      }
    }

Read and written with tensorflow_serving's own protos (tensorflow-serving-api), so a file this
module writes is one the tensorflow/serving image reads (and the stand-in, serving/emulator/).
"""
import os

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from models import serving_layout

PLATFORM = 'tensorflow'

ModelServerConfig = model_server_config_pb2.ModelServerConfig
ModelConfig = model_server_config_pb2.ModelConfig


class ConfigError(ValueError):
  """A config file that cannot be read or parsed; the message says where."""


def parse(text: str) -> ModelServerConfig:
  try:
    return text_format.Parse(text, ModelServerConfig())
  except text_format.ParseError as e:
    raise ConfigError(str(e)) from None


def read(path: str) -> ModelServerConfig:
  try:
    with open(path) as f:
      text = f.read()
  except (OSError, UnicodeDecodeError) as e:
    raise ConfigError(f'cannot read {path}: {e}') from None
  return parse(text)


def write(path: str, config: ModelServerConfig) -> None:
  """Replaces the file in one rename, so a server polling it never reads half of it."""
  temporary = f'{path}.tmp-{os.getpid()}'
  with open(temporary, 'w') as f:
    f.write(to_text(config))
  os.replace(temporary, path)


def to_text(config: ModelServerConfig) -> str:
  return text_format.MessageToString(config)


def single_model(name: str, base_path: str) -> ModelServerConfig:
  """What tensorflow_model_server builds from --model_name and --model_base_path."""
  config = ModelServerConfig()
  config.model_config_list.config.add(name=name, base_path=base_path, model_platform=PLATFORM)
  return config


def model(config: ModelServerConfig, name: str = serving_layout.MODEL_NAME) -> ModelConfig:
  for entry in config.model_config_list.config:
    if entry.name == name:
      return entry
  raise ConfigError(f'the config has no model named {name!r} (it has '
                    f'{", ".join(c.name for c in config.model_config_list.config) or "none"})')

