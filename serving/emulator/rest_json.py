"""TF Serving's REST JSON: request bodies to arrays, arrays and states to response bodies.

Mirrors tensorflow_serving/util/json_tensor.cc and model_servers/http_rest_api_util.cc: the same
checks in the same order with the same messages, and the same bytes out (rapidjson's
PrettyWriter for predict and errors, protobuf's JSON printer for status and metadata). Map keys
(signatures, tensors) come out sorted, where TF Serving's order is the hash map's.
"""
import base64
import binascii
import json
import math
import re
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

ROW, COLUMNAR = 'instances', 'inputs'  # request formats, by their key
# Canonical error code -> HTTP status (model_servers/http_server.cc).
HTTP_STATUS = {
    'CANCELLED': 499, 'UNKNOWN': 500, 'INVALID_ARGUMENT': 400, 'DEADLINE_EXCEEDED': 504,
    'NOT_FOUND': 404, 'ALREADY_EXISTS': 409, 'PERMISSION_DENIED': 403,
    'RESOURCE_EXHAUSTED': 429, 'FAILED_PRECONDITION': 400, 'ABORTED': 409,
    'OUT_OF_RANGE': 400, 'UNIMPLEMENTED': 501, 'INTERNAL': 500, 'UNAVAILABLE': 503,
    'DATA_LOSS': 500, 'UNAUTHENTICATED': 401,
}
# rapidjson's words for the parse errors Python's json module reports differently.
_PARSE_ERRORS = {
    'Expecting value': 'Invalid value.',
    'Expecting property name enclosed in double quotes': 'Missing a name for object member.',
    "Expecting ':' delimiter": 'Missing a colon after a name of object member.',
    'Extra data': 'The document root must not be followed by other values.',
    'Unterminated string starting at': 'Missing a closing quotation mark in string.',
}
_FLOAT32_MAX = float(np.finfo(np.float32).max)
MAX_DEPTH = 64  # JSON nesting levels a request may have (a rank-60 tensor still fits)
_BRACKETS_AND_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]')
_DOUBLE_DIGITS = 308  # an integer with more digits may be beyond a double's range
_INDENT = '    '  # rapidjson PrettyWriter


class RestError(Exception):
  """A request that fails with a canonical error code, as TF Serving's Status does."""

  def __init__(self, code: str, message: str):
    super().__init__(message)
    self.code = code
    self.message = message

  def __str__(self):  # Status::ToString(), which TF Serving nests into outer messages
    return f'{self.code}: {self.message}'

  @property
  def http_status(self) -> int:
    return HTTP_STATUS.get(self.code, 500)


def invalid(message: str) -> RestError:
  return RestError('INVALID_ARGUMENT', message)


def error_body(message: str) -> bytes:
  return ('{\n' + _INDENT + '"error": ' + _quote(message) + '\n}').encode()


def parse(body: bytes) -> Dict[str, Any]:
  """The request document, parsed as rapidjson parses it for TF Serving: UTF-8 only, NaN and
  Infinity taken, a number too big for a double refused, and of repeated keys the first one
  (FindMember's). A document nested deeper than MAX_DEPTH is refused as malformed before it
  is parsed: no tensor is that deep, and deeper ones would exhaust Python's recursion.

  The number and object hooks are Python calls, so a thread parsing a large body lets the
  event loop run between them (a bare C parse would hold the GIL throughout)."""
  if not body:
    raise invalid('JSON Parse error: The document is empty')
  if body.count(b'[') + body.count(b'{') > MAX_DEPTH:  # cheap: most requests stop here
    too_deep = _too_deep_at(body)
    if too_deep is not None:
      raise invalid(f'JSON Parse error: Nesting deeper than {MAX_DEPTH} levels. at offset: '
                    f'{too_deep}')
  try:
    text = body.decode('utf-8')  # rapidjson reads UTF-8: no UTF-16/32 guessing
  except UnicodeDecodeError as e:
    raise invalid(f'JSON Parse error: Invalid encoding in string. at offset: {e.start}'
                  ) from None
  try:
    doc = json.loads(text, object_pairs_hook=_first_wins, parse_float=_json_float,
                     parse_int=_json_int)
  except json.JSONDecodeError as e:
    raise invalid(f'JSON Parse error: {_PARSE_ERRORS.get(e.msg, "Invalid value.")} '
                  f'at offset: {_byte_offset(text, e.pos)}') from None
  except _TooBig as e:
    raise invalid('JSON Parse error: Number too big to be stored in double. at offset: '
                  f'{_byte_offset(text, text.find(e.number))}') from None
  if not isinstance(doc, dict):
    raise invalid(f'JSON Value: {_value(doc)} Is not object')
  return doc


class _TooBig(ValueError):

  def __init__(self, number: str):
    super().__init__(number)
    self.number = number


def _json_float(text: str) -> float:
  value = float(text)
  if math.isinf(value):  # 1e400: rapidjson refuses it rather than round it to Infinity
    raise _TooBig(text)
  return value


def _json_int(text: str) -> int:
  if len(text) > _DOUBLE_DIGITS and math.isinf(float(text)):
    raise _TooBig(text)
  return int(text)


def _first_wins(pairs: list) -> dict:
  doc = dict(pairs)
  if len(doc) != len(pairs):  # a repeated key: rapidjson's FindMember finds the first
    doc = {}
    for key, value in pairs:
      doc.setdefault(key, value)
  return doc


def _byte_offset(text: str, position: int) -> int:
  """rapidjson counts offsets in bytes of the UTF-8 body."""
  return position if text.isascii() else len(text[:position].encode())


def _too_deep_at(body: bytes) -> Optional[int]:
  """The offset of the first bracket nested deeper than MAX_DEPTH (strings skipped), or None."""
  depth = 0
  for token in _BRACKETS_AND_STRINGS.finditer(body):
    char = token.group()[:1]
    if char in b'[{':
      depth += 1
      if depth > MAX_DEPTH:
        return token.start()
    elif char in b']}':
      depth -= 1
  return None


def check_signature_for(method: str, signature) -> None:
  """PreProcessClassification / PreProcessRegression (servables/tensorflow/classifier.cc,
  regressor.cc) with the method-name check off, TF Serving's default."""
  kind = 'classification' if method == 'classify' else 'regression'
  if len(signature.inputs) != 1:
    raise invalid('Expected one input Tensor.')
  if method == 'classify' and len(signature.outputs) not in (1, 2):
    raise invalid(f'Expected one or two output Tensors, found {len(signature.outputs)}')
  if method == 'regress' and len(signature.outputs) != 1:
    raise invalid('Expected one output Tensor.')
  if 'inputs' not in signature.inputs:
    raise invalid(f'No {kind} inputs found in SignatureDef: {signature}')
  if method == 'classify' and not {'classes', 'scores'} & set(signature.outputs):
    raise invalid('Expected classification signature outputs to contain at least one of '
                  f'"classes" or "scores". Signature was: {signature}')
  if method == 'regress' and 'outputs' not in signature.outputs:
    raise invalid(f'No regression outputs found in SignatureDef: {signature}')


def signature_name(doc: Mapping[str, Any]) -> str:
  name = doc.get('signature_name', '')
  if not isinstance(name, str):
    raise invalid(f"JSON Value: {_value(doc)} not formatted correctly. 'signature_name' key "
                  'must be a string value.')
  return name


def request_tensors(doc: Mapping[str, Any],
                    inputs: Mapping[str, str]) -> Tuple[str, Dict[str, np.ndarray]]:
  """(format, input name -> array) from a predict request; `inputs` maps names to dtypes."""
  if ROW in doc:
    if COLUMNAR in doc:
      raise invalid(f"JSON Value: {_value(doc)} Not formatted correctly expecting only one of "
                    "'inputs' or 'instances' keys to exist ")
    instances = doc[ROW]
    if not isinstance(instances, list):
      raise invalid(f"JSON Value: {_value(doc)} Excepting 'instances' to be an list/array")
    if not instances:
      raise invalid(f"JSON Value: {_value(doc)} No values in 'instances' array")
    return ROW, _from_instances(instances, inputs)
  if COLUMNAR in doc:
    return COLUMNAR, _from_inputs(doc[COLUMNAR], inputs)
  raise invalid("Missing 'inputs' or 'instances' key")


def batch_size(doc: Mapping[str, Any]) -> int:
  """The rows a predict request asks for, read from its document before any conversion:
  the length of 'instances', or the longest list among the 'inputs' (0 where none)."""
  value = doc.get(ROW, doc.get(COLUMNAR))
  values = value.values() if _is_object(value) else [value]
  return max((len(v) for v in values if isinstance(v, list)), default=0)


def predict_body(outputs: Mapping[str, np.ndarray], request_format: str) -> bytes:
  names = sorted(outputs)
  if request_format == COLUMNAR:
    if len(names) == 1:
      value = _array(outputs[names[0]], 1)
    else:
      value = '{' + ','.join(f'\n{_INDENT * 2}{_quote(n)}: {_array(outputs[n], 2)}'
                             for n in names) + f'\n{_INDENT}}}'
    return ('{\n' + _INDENT + '"outputs": ' + value + '\n}').encode()
  rows = len(outputs[names[0]])
  if len(names) == 1:
    items = ', '.join(_array(outputs[names[0]][i], 0, True) for i in range(rows))
  else:
    items = ','.join(
        f'\n{_INDENT * 2}{{' + ','.join(
            f'\n{_INDENT * 3}{_quote(n)}: {_array(outputs[n][i], 0, True)}' for n in names) +
        f'\n{_INDENT * 2}}}' for i in range(rows))
  return ('{\n' + _INDENT + '"predictions": [' + items + f'\n{_INDENT}]\n}}').encode()


def status_body(versions: Sequence[Tuple[int, str, str, str]]) -> bytes:
  """(version, state, error code, error message) per version, newest first."""
  return _protobuf_json({'model_version_status': [
      {'version': str(version), 'state': state,
       'status': {'error_code': code, 'error_message': message}}
      for version, state, code, message in versions]}).encode()


def metadata_body(model_name: str, version: int, signature_defs: Mapping[str, Any]) -> bytes:
  """GetModelMetadata as TF Serving glues it together from two protobuf JSON strings."""
  spec = {'name': model_name, 'signature_name': '', 'version': str(version)}
  defs = {'signature_def': {k: _message(signature_defs[k]) for k in sorted(signature_defs)}}
  return ('{\n"model_spec":' + _protobuf_json(spec) + ',\n"metadata": {"signature_def": ' +
          _protobuf_json(defs) + '}\n}\n').encode()


def _is_object(value) -> bool:
  """A JSON object that is not a {"b64": ...} binary value."""
  return isinstance(value, dict) and not _is_b64(value)


def _is_b64(value) -> bool:
  return isinstance(value, dict) and len(value) == 1 and isinstance(value.get('b64'), str)


def _from_instances(instances: list, inputs: Mapping[str, str]) -> Dict[str, np.ndarray]:
  scalars = _scalar_instances(instances, inputs)
  if scalars is not None:
    return scalars
  named = _is_object(instances[0])
  if not named and len(inputs) > 1:
    raise invalid('instances is a plain list, but expecting list of objects as multiple input '
                  'tensors required as per tensorinfo_map')
  values = {name: [] for name in inputs}
  shapes = {}
  for i, item in enumerate(instances):
    if named:
      if not _is_object(item):
        raise invalid(f'Expecting object but got list at item {i} of input list')
      for name, value in item.items():
        try:
          _add_instance_item(value, name, inputs, values, shapes)
        except RestError as e:
          raise invalid(f"Failed to process element: {i} key: {name} of 'instances' list. "
                        f'Error: {e}') from None
      if set(item) != set(inputs):
        raise invalid(f"Failed to process element: {i} of 'instances' list. JSON object: "
                      f"{_value(item)} keys must be equal to: {','.join(sorted(inputs))}")
    else:
      if _is_object(item):
        raise invalid(f'Expecting value/list but got object at item {i} of input list')
      try:
        _add_instance_item(item, next(iter(inputs)), inputs, values, shapes)
      except RestError as e:
        raise invalid(f"Failed to process element: {i} of 'instances' list. Error: {e}"
                      ) from None
  return {name: _to_array(values[name], inputs[name], [len(instances)] + shapes[name])
          for name in shapes}


def _scalar_instances(instances: list, inputs: Mapping[str, str]
                      ) -> Optional[Dict[str, np.ndarray]]:
  """The request the client sends, fast: every instance an object with one scalar or b64
  value per input. None for anything else (lists, missing keys, wrong types), which the
  general path then takes or rejects with TF Serving's message."""
  columns = {name: [] for name in inputs}
  try:
    for item in instances:
      if not isinstance(item, dict) or len(item) != len(inputs):
        return None
      for name, value in item.items():
        if isinstance(value, list) or (isinstance(value, dict) and inputs[name] != 'string'):
          return None
        columns[name].append(_b64_decode(value) if isinstance(value, dict)
                             else _CONVERT[inputs[name]](value))
  except (KeyError, RestError):
    return None
  return {name: np.array(column, dtype=_NUMPY[inputs[name]])
          for name, column in columns.items()}


def _add_instance_item(value, name, inputs, values, shapes):
  if name not in inputs:
    raise invalid(f'JSON object: does not have named input: {name}')
  shape = _shape(value)
  before = len(values[name])
  _fill(value, 0, shape, inputs[name], values[name])
  size = len(values[name]) - before
  if name not in shapes:
    shapes[name] = shape
  elif math.prod(shapes[name]) != size:
    raise invalid(f'Expecting tensor size: {math.prod(shapes[name])} but got: {size}')
  elif shapes[name] != shape:
    raise invalid(f'Expecting shape {_shape_text(shapes[name])} but got: {_shape_text(shape)}')


def _from_inputs(value, inputs: Mapping[str, str]) -> Dict[str, np.ndarray]:
  if not _is_object(value):
    if len(inputs) > 1:
      raise invalid('inputs is a plain value/list, but expecting an object as multiple input '
                    'tensors required as per tensorinfo_map')
    name = next(iter(inputs))
    return {name: _tensor(value, inputs[name])}
  tensors = {}
  for name in sorted(inputs):
    if name not in value:
      raise invalid(f"Missing named input: {name} in 'inputs' object.")
    tensors[name] = _tensor(value[name], inputs[name])
  return tensors


def _tensor(value, dtype: str) -> np.ndarray:
  shape = _shape(value)
  flat = []
  _fill(value, 0, shape, dtype, flat)
  return _to_array(flat, dtype, shape)


def _shape(value) -> list:
  """Dense shape from the first element at each level (GetDenseTensorShape)."""
  shape = []
  while isinstance(value, list):
    shape.append(len(value))
    if not value:
      break
    value = value[0]
  return shape


def _fill(value, level: int, shape: list, dtype: str, out: list):
  if not isinstance(value, list):
    if level != len(shape):
      raise invalid(f'JSON Value: {_value(value)} found at incorrect level: {level + 1} in the '
                    f'JSON DOM. Expected at level: {len(shape)}')
    if isinstance(value, dict):
      if dtype != 'string':
        raise _type_error(value, dtype)
      out.append(_b64_decode(value))
    else:
      out.append(_CONVERT[dtype](value))
    return
  if level >= len(shape):
    raise invalid(f'Encountered list at unexpected level: {level} expected < {len(shape)}')
  if len(value) != shape[level]:
    raise invalid(f'Encountered list at unexpected size: {len(value)} at level: {level} '
                  f'expected size: {shape[level]}')
  for item in value:
    _fill(item, level + 1, shape, dtype, out)


def _b64_decode(value) -> bytes:
  if not _is_b64(value):
    raise invalid(f'JSON Value: {_value(value)} not formatted correctly for base64 data')
  text = value['b64']
  try:  # absl::Base64Unescape also takes the text without its '=' padding
    return base64.b64decode(text + '=' * (-len(text) % 4), validate=True)
  except (binascii.Error, ValueError):
    raise invalid('Unable to base64 decode') from None


def _type_error(value, dtype: str) -> RestError:
  return invalid(f'JSON Value: {_value(value)} Type: {_json_type(value)} is not of expected '
                 f'type: {dtype}')


def _string(value):
  if not isinstance(value, str):
    raise _type_error(value, 'string')
  return value.encode()


def _integer(dtype: str, bits: int):
  def convert(value):
    # A JSON integer: not a bool, which is an int to Python, nor a decimal like 3.0.
    if isinstance(value, bool) or not isinstance(value, int) or not (
        -2**(bits - 1) <= value < 2**(bits - 1)):
      raise _type_error(value, dtype)
    return value
  return convert


def _decimal(dtype: str, digits: int, max_value: float):
  def convert(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
      raise _type_error(value, dtype)
    lossless = (abs(value) < 2**digits if isinstance(value, int)
                else not math.isfinite(value) or abs(value) <= max_value)
    if not lossless:
      raise invalid(f'Cannot convert JSON value: {_value(value)} to {dtype} without loss of '
                    'precision.')
    return value
  return convert


def _boolean(value):
  if not isinstance(value, bool):
    raise _type_error(value, 'bool')
  return value


# Input dtypes by TF's DataTypeString name.
_CONVERT = {
    'string': _string, 'int64': _integer('int64', 64), 'int32': _integer('int32', 32),
    'float': _decimal('float', 24, _FLOAT32_MAX), 'double': _decimal('double', 53, math.inf),
    'bool': _boolean,
}
_NUMPY = {'string': object, 'int64': np.int64, 'int32': np.int32, 'float': np.float32,
          'double': np.float64, 'bool': np.bool_}


def _to_array(flat: list, dtype: str, shape: list) -> np.ndarray:
  return np.array(flat, dtype=_NUMPY[dtype]).reshape(shape)


def _json_type(value) -> str:
  if value is None:
    return 'Null'
  if isinstance(value, bool):
    return 'True' if value else 'False'
  return {dict: 'Object', list: 'Array', str: 'String'}.get(type(value), 'Number')


def _value(value) -> str:
  """JsonValueToString: a top-level decimal as a float where it fits, else pretty JSON."""
  if isinstance(value, float) and (abs(value) <= _FLOAT32_MAX or not math.isfinite(value)):
    return _number(np.float32(value))
  return json.dumps(value, indent=4, ensure_ascii=False)


def _quote(text: str) -> str:
  return json.dumps(text, ensure_ascii=False)


def _number(value) -> str:
  """WriteDecimal: six significant digits, or all a round trip needs; whole numbers get '.0'."""
  if math.isnan(value):
    return 'NaN'
  if math.isinf(value):
    return '-Infinity' if value < 0 else 'Infinity'
  text = '%g' % value
  if type(value)(text) != value:
    text = '%.*g' % (9 if isinstance(value, np.float32) else 17, value)
  if '.' not in text and 'e' not in text:
    text += '.0'
  return text


def _scalar(value) -> str:
  if isinstance(value, (np.floating, float)):
    return _number(value if isinstance(value, np.float32) else np.float64(value))
  if isinstance(value, (np.bool_, bool)):
    return 'true' if value else 'false'
  if isinstance(value, bytes):
    return _quote(value.decode('utf-8', 'replace'))
  return str(int(value))


def _array(value, level: int, single_line: bool = False) -> str:
  """A tensor as PrettyWriter writes it; `level` is the indent of its closing bracket."""
  value = np.asarray(value)
  if value.ndim == 0:
    return _scalar(value[()])
  if single_line:
    return '[' + ', '.join(_array(v, 0, True) for v in value) + ']'
  if not len(value):
    return '[]'
  inner = _INDENT * (level + 1)
  return ('[' + ','.join(f'\n{inner}{_array(v, level + 1)}' for v in value) +
          f'\n{_INDENT * level}]')


def _shape_text(shape: list) -> str:
  return '[' + ','.join(str(d) for d in shape) + ']'


def _protobuf_json(doc: dict) -> str:
  """protobuf's JsonPrintOptions(add_whitespace): one-space indent and a final newline."""
  return json.dumps(doc, indent=1, ensure_ascii=False) + '\n'


_WRAPPERS = ('google.protobuf.Int64Value', 'google.protobuf.UInt64Value',
             'google.protobuf.Int32Value', 'google.protobuf.StringValue')
_INT64_TYPES = (3, 4, 6, 16, 18)  # FieldDescriptor.TYPE_INT64, UINT64, FIXED64, SFIXED64, SINT64


def _message(message) -> dict:
  """always_print_primitive_fields: fields in declaration order with their defaults, then
  the member set in each oneof (protobuf's DefaultValueObjectWriter)."""
  fields, oneofs = {}, {}
  for field in message.DESCRIPTOR.fields:
    value = getattr(message, field.name)
    if field.containing_oneof is not None:
      if message.HasField(field.name):
        oneofs[field.name] = _field(field, value)
    elif (field.message_type is not None and field.label != field.LABEL_REPEATED and
          not message.HasField(field.name)):
      continue  # an unset sub-message is left out
    else:
      fields[field.name] = _field(field, value)
  fields.update(oneofs)
  return fields


def _field(field, value):
  if field.message_type is not None and field.message_type.GetOptions().map_entry:
    value_field = field.message_type.fields_by_name['value']
    return {str(k): _field(value_field, value[k]) for k in sorted(value)}
  if field.label == field.LABEL_REPEATED:
    return [_single(field, v) for v in value]
  return _single(field, value)


def _single(field, value):
  if field.message_type is not None:
    if field.message_type.full_name in _WRAPPERS:
      return _single(field.message_type.fields_by_name['value'], value.value)
    return _message(value)
  if field.enum_type is not None:
    return field.enum_type.values_by_number[value].name
  if field.type in _INT64_TYPES:
    return str(value)
  if field.type == field.TYPE_BYTES:
    return base64.b64encode(value).decode()
  return value
