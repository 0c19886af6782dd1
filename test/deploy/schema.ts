// A small schema checker for JSON-shaped configuration (Kubernetes objects, Mesos protobuf JSON):
// every field known, of its declared type and enum, required fields present; errors name the path.

export interface Attribute {
  /** The JSON key. */
  name: string;
  /** string, number, boolean, Date, any, IntOrString, Array<T>, { [key: string]: T; } or a model name. */
  type: string;
  /** "int32", "int64", ... for integers; "" otherwise. */
  format: string;
}

export interface Model {
  attributes: Attribute[];
  required: string[];
  /** Exactly one of these fields must be set (a CRD's oneOf, a protobuf oneof that is required). */
  exactlyOneOf?: string[];
}

export type ModelTable = Record<string, Model>;

export interface Schema {
  models: ModelTable;
  /** Allowed values of enum fields, by "Model.field". */
  enums: Record<string, readonly string[]>;
}

/** Appends to errors every problem of value as the given type, at path. */
const ARRAY = /^Array<(.+)>$/;
const MAP = /^\{ \[key: string\]: (.+); \}$/;

export function checkValue(schema: Schema, value: unknown, type: string, format: string, path: string, errors: string[]): void {
  const array = ARRAY.exec(type);
  const map = MAP.exec(type);
  if (array) return checkArray(schema, value, array[1], format, path, errors);
  if (map) return checkMap(schema, value, map[1], format, path, errors);
  if (schema.models[type]) return checkModel(schema, value, type, path, errors);
  const problem = primitiveProblem(value, type, format);
  if (problem) errors.push(`${path}: ${problem}`);
}

function checkArray(schema: Schema, value: unknown, itemType: string, format: string, path: string, errors: string[]): void {
  if (!Array.isArray(value)) return void errors.push(`${path}: expected a list of ${itemType}`);
  value.forEach((item, index) => checkValue(schema, item, itemType, format, `${path}[${index}]`, errors));
}

function checkMap(schema: Schema, value: unknown, valueType: string, format: string, path: string, errors: string[]): void {
  if (!isPlainObject(value)) return void errors.push(`${path}: expected a map of ${valueType}`);
  for (const [key, item] of Object.entries(value)) checkValue(schema, item, valueType, format, `${path}.${key}`, errors);
}

function checkModel(schema: Schema, value: unknown, type: string, path: string, errors: string[]): void {
  if (!isPlainObject(value)) return void errors.push(`${path}: expected an object (${type})`);
  const model = schema.models[type];
  const known = new Map(model.attributes.map((attribute) => [attribute.name, attribute]));
  for (const [key, field] of Object.entries(value)) {
    const attribute = known.get(key);
    if (!attribute) {
      errors.push(`${path}.${key}: unknown field of ${type} (known: ${[...known.keys()].join(', ')})`);
      continue;
    }
    checkValue(schema, field, attribute.type, attribute.format, `${path}.${key}`, errors);
    checkEnum(schema.enums[`${type}.${key}`], field, `${path}.${key}`, errors);
  }
  for (const key of model.required) if (value[key] === undefined) errors.push(`${path}.${key}: required by ${type}`);
  const setOneOf = model.exactlyOneOf?.filter((key) => value[key] !== undefined);
  if (setOneOf && setOneOf.length !== 1) errors.push(`${path}: exactly one of ${model.exactlyOneOf?.join(', ')} must be set`);
}

function checkEnum(allowed: readonly string[] | undefined, value: unknown, path: string, errors: string[]): void {
  if (!allowed) return;
  for (const item of Array.isArray(value) ? value : [value]) {
    if (!allowed.includes(item as string)) errors.push(`${path}: ${JSON.stringify(item)} is not one of ${allowed.join(', ')}`);
  }
}

function primitiveProblem(value: unknown, type: string, format: string): string | undefined {
  switch (type) {
    case 'string':
      return typeof value === 'string' ? undefined : `expected a string, got ${JSON.stringify(value)}`;
    case 'boolean':
      return typeof value === 'boolean' ? undefined : `expected true or false, got ${JSON.stringify(value)}`;
    case 'number':
      if (typeof value !== 'number') return `expected a number, got ${JSON.stringify(value)}`;
      return format.startsWith('int') && !Number.isInteger(value) ? `expected an integer, got ${value}` : undefined;
    case 'IntOrString':
      return typeof value === 'number' || typeof value === 'string' ? undefined : `expected a number or a name, got ${JSON.stringify(value)}`;
    case 'Date':
      return typeof value === 'string' && !Number.isNaN(Date.parse(value)) ? undefined : `expected an RFC 3339 time, got ${JSON.stringify(value)}`;
    case 'any':
    case 'object':
      return undefined;
    default:
      return `no model for type ${type}`;
  }
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
