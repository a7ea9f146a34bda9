"""local_runner.py's parts: the cache fingerprints, the code revision, the error paragraph and
the log redirection. A whole run of it is tests/test_local_run_e2e.py's."""
import os
import re
import subprocess

import pytest

from pipeline import cache_keys
from pipeline import config as config_lib
from pipeline import console
from pipeline import progress
from pipeline.pipeline import create_pipeline


def _write(path, text):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w') as f:
    f.write(text)


def test_data_fingerprint_follows_the_span_files(tmp_path):
  data, schema = str(tmp_path / 'data'), str(tmp_path / 'schema.pbtxt')
  _write(os.path.join(data, 'span-1', 'ads.csv'), 'a,b\n1,2\n')
  _write(schema, 'feature {}\n')
  first = cache_keys.compute(data, schema, None)
  assert cache_keys.compute(data, schema, None).data == first.data

  _write(os.path.join(data, 'span-1', 'images', 'ad_1.png'), 'png')  # an image added
  with_image = cache_keys.compute(data, schema, None)
  _write(os.path.join(data, 'span-1', 'ads.csv'), 'a,b\n1,2\n3,4\n')  # rows added
  with_rows = cache_keys.compute(data, schema, None)
  _write(os.path.join(data, 'span-2', 'ads.csv'), 'a,b\n')  # a new month
  with_span = cache_keys.compute(data, schema, None)
  assert len({first.data, with_image.data, with_rows.data, with_span.data}) == 4
  assert with_span.schema == first.schema
  _write(schema, 'feature {}\nfeature {}\n')
  assert cache_keys.compute(data, schema, None).schema != first.schema

  tuned = str(tmp_path / 'tuned.json')
  assert first.tuned_hparams == cache_keys.compute(data, schema, tuned).tuned_hparams == ''
  _write(tuned, '{}')
  assert cache_keys.compute(data, schema, tuned).tuned_hparams != ''


def test_code_revision_names_the_commit_and_uncommitted_changes(tmp_path):
  def git(*args):
    subprocess.run(['git', '-C', str(tmp_path), *args], check=True, capture_output=True)
  assert cache_keys.code_revision(str(tmp_path)) == ''  # not a checkout
  git('init', '-q')
  (tmp_path / 'a.py').write_text('x = 1\n')
  git('add', 'a.py')
  git('-c', 'user.email=t@t', '-c', 'user.name=t', 'commit', '-qm', 'one')
  head = subprocess.run(['git', '-C', str(tmp_path), 'rev-parse', '--short', 'HEAD'],
                        capture_output=True, text=True, check=True).stdout.strip()
  assert cache_keys.code_revision(str(tmp_path)) == head
  (tmp_path / 'a.py').write_text('x = 2\n')
  assert cache_keys.code_revision(str(tmp_path)) == head + '-dirty'


def test_caching_only_with_fingerprints(tmp_path):
  data, schema = str(tmp_path), config_lib.SCHEMA_FILE
  roots = ('/tmp/root', data, '/tmp/serving')
  assert not create_pipeline(*roots).enable_cache  # Kubeflow: no fingerprints, no cache
  fingerprints = cache_keys.compute(data, schema, None)
  local = create_pipeline(*roots, fingerprints=fingerprints)
  assert local.enable_cache
  examples = next(c for c in local.components if c.id == 'ImageCsvExampleGen').outputs['examples']
  assert examples.additional_custom_properties[cache_keys.DATA_PROPERTY] == fingerprints.data


def _raise_bare():
  raise StopIteration


def test_error_paragraph_names_type_message_and_place():
  with pytest.raises(StopIteration) as bare:
    _raise_bare()
  text = progress.error_paragraph(bare.value)
  assert text[0] == 'StopIteration (the exception has no message)'
  assert re.fullmatch(r'\(raised at tests/test_local_runner\.py:\d+ in _raise_bare\)', text[-1])

  long = ValueError('first line\n\n' + '\n'.join(f'line {i}' for i in range(40)))
  text = progress.error_paragraph(long)
  assert text[0] == 'ValueError: first line' and text[1] == 'line 0'
  assert len(text) == progress.MAX_ERROR_LINES + 1 and '16 more lines' in text[-1]


def test_to_log_sends_file_descriptors_to_the_log(tmp_path, capfd):
  log = str(tmp_path / 'logs' / 'run.log')
  with console.to_log(log, b'loading\n') as screen:
    os.write(1, b'C++ to stdout\n')
    os.write(2, b'C++ to stderr\n')
    screen.write('for a person\n')
  out, err = capfd.readouterr()
  assert 'for a person' in out and 'C++' not in out + err
  with open(log) as f:
    assert f.read() == 'loading\nC++ to stdout\nC++ to stderr\n'
