"""Where the monthly input lives: `<data_root>/span-<N>/ads.csv` plus its images.

Defined once for ExampleGen, DataGate, the sample-data generator, the pre-run CSV check and the
run summary. Paths are joined with '/', which is right for local paths and gs:// alike.
"""
SPAN_SPEC = '{SPAN}'  # where a split pattern puts the span number (TFX's convention)
ADS_FILE = 'ads.csv'
IMAGE_DIR = 'images'  # image paths in ads.csv are relative to the span folder
SPLIT_PATTERN = f'span-{SPAN_SPEC}/{ADS_FILE}'  # ExampleGen's input pattern, relative to root
GROUND_TRUTH_DIR = 'ground_truth'  # sample data only: the generator's true probabilities
# Its columns: the row id and the true click probability of that impression.
GROUND_TRUTH_COLUMNS = ('impression_id', 'click_probability')


def span_dir(root: str, span: int) -> str:
  return f"{root.rstrip('/')}/span-{span}"


def ads_csv(root: str, span: int) -> str:
  return f'{span_dir(root, span)}/{ADS_FILE}'


def ground_truth_csv(root: str, span: int) -> str:
  return f"{root.rstrip('/')}/{GROUND_TRUTH_DIR}/span-{span}.csv"
