"""What features.py declares: the declarations it refuses in words before any component reads
them, the log's CSV format, and what log_scale does to a value."""
import numpy as np
import pytest
import tensorflow as tf

from models import features
from models import preprocessing


def test_an_empty_categorical_default_is_refused_by_name():
  with pytest.raises(ValueError, match=r"site_domain: a CATEGORICAL default of '' is dropped"):
    features.Feature('site_domain', features.CATEGORICAL, 'string', 'Site.', required=False,
                     default='')


def test_a_visible_categorical_default_and_an_empty_key_default_are_accepted():
  assert features.Feature('site_domain', features.CATEGORICAL, 'string', 'Site.',
                          required=False, default='<missing>').default == '<missing>'
  assert features.Feature('campaign_id', features.KEY, 'string', 'Campaign.', required=False,
                          default='').default == ''


@pytest.mark.sample_fields
def test_the_sample_log_is_declared_comma_separated_with_a_header():
  assert features.CSV_FORMAT == features.CsvFormat(delimiter=',', columns=None)
  assert features.CSV_FORMAT.has_header


@pytest.mark.parametrize('declared,words', [
    (dict(delimiter=''), 'the delimiter must be one character'),
    (dict(delimiter='\t\t'), 'the delimiter must be one character'),
    (dict(delimiter='"'), 'other than a quote or a line break'),
    (dict(columns='click,C1'), 'as a tuple of names'),
    (dict(columns=()), 'as a tuple of names'),
    (dict(columns=('click', 'C1', 'click')), r"columns names \['click'\] more than once"),
])
def test_a_csv_format_that_cannot_be_read_is_refused_in_words(declared, words):
  with pytest.raises(ValueError, match=words):
    features.CsvFormat(**declared)


def test_a_header_less_tab_separated_format():
  declared = features.CsvFormat(delimiter='\t', columns=('click', 'C1'))
  assert not declared.has_header and declared.columns == ('click', 'C1')


def test_log_scale_keeps_the_sign_and_order_of_negative_values():
  """A negative value under log_scale is sign(x) * log1p(|x|), not clamped onto 0's value."""
  values = [-3.0, -0.5, 0.0, 2.0]
  np.testing.assert_allclose(preprocessing.log_scale(tf.constant(values)).numpy(),
                             [-np.log1p(3.0), -np.log1p(0.5), 0.0, np.log1p(2.0)], rtol=1e-6)
