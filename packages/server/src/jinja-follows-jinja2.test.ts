// Where @huggingface/jinja departed from Python's Jinja2 in ways chat templates meet, this repository patches it
// (patches/@huggingface__jinja@0.5.11.patch): each behaviour here is Jinja2's, as Hugging Face's
// apply_chat_template renders it (templates-render-as-jinja2.test.ts compares whole templates).
import { Template } from '@huggingface/jinja';
import { describe, expect, test } from 'vitest';

function render(source: string, variables: Record<string, unknown> = {}): string {
  return new Template(source).render(variables);
}

describe('@huggingface/jinja, as Jinja2 renders', () => {
  test('iterating an undefined variable renders nothing (the loop takes its else branch)', () => {
    expect(render('{% for tool in tools %}{{ tool }}{% else %}no tools{% endfor %}')).toBe('no tools');
  });

  test('the length of an undefined variable is 0', () => {
    expect(render('{{ tools | length }}')).toBe('0');
  });

  test('selectattr, rejectattr and map of none or an undefined variable yield nothing', () => {
    expect(
      render(
        "{{ none | selectattr('type', 'equalto', 'code') | list | length }} {{ tools | rejectattr('type') | list | length }} " +
          "{{ none | map(attribute='name') | list | length }}",
      ),
    ).toBe('0 0 0');
  });

  test('dict literals take integer keys, which stay integers and are JSON strings', () => {
    expect(
      render(
        "{% set gears = {0: 'off', 512: 'low'} %}{{ gears[512] }}{% for k, v in gears | dictsort %} {{ k + 1 }}={{ v }}{% endfor %} {{ gears | tojson }}",
      ),
    ).toBe('low 1=off 513=low {"0": "off", "512": "low"}');
    expect(render("{% set gears = {0: 'off'} %}{{ gears.get(0) }} {{ 0 in gears }} {{ '0' in gears }}")).toBe('off True False');
  });

  test("strings have Python's format method", () => {
    expect(render("{{ '<tok{}|{}|{name}>{{}}'.format('A', 2, name=none) }}")).toBe('<tokA|2|None>{}');
    expect(() => render("{{ '{}{0}'.format('x') }}")).toThrow('cannot switch between automatic and manual field numbering');
  });

  test("the string filter, {{ }} and ~ write Python's str(): repr for lists, tuples and dicts, True, None", () => {
    const tool = { name: 'f', args: { a: [1, 2.5] } };
    expect(render('{{ tool | string }}', { tool })).toBe("{'name': 'f', 'args': {'a': [1, 2.5]}}");
    expect(render(`{{ [true, none, "it's", 'x\ny', ('a', 1)] | string }}`)).toBe(`[True, None, "it's", 'x\\ny', ('a', 1)]`);
    expect(render('{{ none }}|{{ false }}|{{ tool }}|{{ missing }}', { tool })).toBe("None|False|{'name': 'f', 'args': {'a': [1, 2.5]}}|");
    expect(render("{{ 'a' ~ none ~ true ~ missing ~ [1] ~ 2 }}")).toBe('aNoneTrue[1]2');
  });

  test('the string filters take str() of anything else: none | trim is None', () => {
    expect(render('[{{ none | trim }}][{{ missing | upper }}][{{ 42 | trim }}]')).toBe('[None][][42]');
  });

  test('safe marks a string as markup: a plain string added to it is HTML-escaped', () => {
    expect(render("{{ 'Use '|safe + name + ' with '|safe + spec | tojson }}", { name: 'a<b & "c"', spec: { k: 'v' } })).toBe(
      'Use a&lt;b &amp; &#34;c&#34; with {&#34;k&#34;: &#34;v&#34;}',
    );
  });

  test('for loops unpack tuples', () => {
    expect(render("{% for field, label in [('max', 'Maximum'), ('min', 'Minimum')] %}{{ field }}={{ label }};{% endfor %}")).toBe(
      'max=Maximum;min=Minimum;',
    );
  });

  test('map, selectattr and rejectattr give generators, which tojson refuses until they are lists', () => {
    const tools = [{ type: 'function', function: { name: 'f' } }];
    expect(() => render("{{ tools | map(attribute='function') | tojson }}", { tools })).toThrow('generator is not JSON serializable');
    expect(() => render("{{ tools | selectattr('type') | tojson }}", { tools })).toThrow('generator is not JSON serializable');
    expect(render("{{ tools | map(attribute='function') | list | tojson }}", { tools })).toBe('[{"name": "f"}]');
  });

  test('tojson refuses an undefined value', () => {
    expect(() => render('{{ missing | tojson }}')).toThrow('Undefined is not JSON serializable');
    expect(() => render('{{ [missing] | tojson(indent=2) }}')).toThrow('Undefined is not JSON serializable');
  });

  test('+ joins a string to a string only', () => {
    expect(() => render("{{ 'n=' + 1 }}")).toThrow('Cannot concatenate');
    expect(() => render("{{ 'args: ' + args }}", { args: { city: 'Paris' } })).toThrow('Cannot concatenate');
    expect(render("{{ 'a' + 'b' }}")).toBe('ab');
  });

  test('min and max give the first smallest or largest item, by attribute when given', () => {
    const items = [{ n: 1 }, { n: 3 }, { n: 3, last: true }];
    expect(render("{{ [3, 1, 2] | min }} {{ [3, 1, 2] | max }} {{ ['b', 'A', 'c'] | min }} {{ [] | min is undefined }}")).toBe(
      '1 3 A True',
    );
    expect(render("{{ items | max(attribute='n') | tojson }}", { items })).toBe('{"n": 3}');
  });
});
