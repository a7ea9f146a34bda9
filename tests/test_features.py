"""Declarations features.py refuses in words, before any component reads them."""
import pytest

from models import features


def test_an_empty_categorical_default_is_refused_by_name():
  with pytest.raises(ValueError, match=r"site_domain: a CATEGORICAL default of '' is dropped"):
    features.Feature('site_domain', features.CATEGORICAL, 'string', 'Site.', required=False,
                     default='')


def test_a_visible_categorical_default_and_an_empty_key_default_are_accepted():
  assert features.Feature('site_domain', features.CATEGORICAL, 'string', 'Site.',
                          required=False, default='<missing>').default == '<missing>'
  assert features.Feature('campaign_id', features.KEY, 'string', 'Campaign.', required=False,
                          default='').default == ''
