// The console's operator pages: catalog models with their offers and prices, and task classes. They call the
// operator's admin API (`lattice:admin`) like any operator tool; the gateway grants that scope to the console only for
// an owner of the operator workspace signed in to it, so everyone else sees neither the pages nor their links.
// Loaded before console.js, whose helpers (el, api, page, table, failure…) these functions use when they run.
'use strict';

const OPERATOR = 'lattice:admin';
const isOperator = () => scopesOf(session.claims).includes(OPERATOR);

/** After sign-in: the operator's links in the navigation, and "operator" beside who is signed in. */
function operatorSignedIn() {
  for (const item of document.querySelectorAll('[data-operator]')) {
    item.hidden = !isOperator();
  }
  if (isOperator()) {
    $('#who').append(' · ', el('strong', {}, 'operator'));
  }
}

/** The page for someone who is not an operator: says so and shows nothing else. */
function operatorsOnly(title) {
  page(title, el('p', {}, 'Only operators of this Lattice see this page: owners of the operator workspace, signed in to it.'));
}

const PRICE_FIELDS = [
  ['input_per_mtok', 'Input, $ per million tokens'],
  ['cached_input_per_mtok', 'Cached input, $ per million tokens'],
  ['output_per_mtok', 'Output, $ per million tokens'],
  ['audio_per_minute', 'Audio, $ per minute'],
  ['per_request', '$ per request'],
];

const pricesText = (prices) => (prices
  ? PRICE_FIELDS.filter(([k]) => prices[k] !== undefined && prices[k] !== null).map(([k]) => `${k} ${prices[k]}`).join(', ') || 'free'
  : '—');

/** An offer as the admin API takes it back: what it returned, without its id and the fields it does not accept. */
function offerRequest(offer) {
  const request = {};
  for (const [k, v] of Object.entries(offer)) {
    if (v !== null && v !== undefined && k !== 'id' && !(k === 'kind' && v === 'runtime') && !(k === 'serves_responses' && v === false)) {
      request[k] = v;
    }
  }
  return request;
}

/** A labelled field of a stacked form. */
function formField(id, label, control) {
  control.id = id;
  control.name = id;
  return el('label', { for: id }, label, control);
}

/** Submits `form` with `send()`, showing what went wrong (the API's message, which names the field) under it. */
function onSubmit(form, send) {
  const error = el('div', { role: 'alert' });
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    error.replaceChildren();
    const button = form.querySelector('button[type=submit]');
    button.disabled = true;
    try {
      await send();
    } catch (e) {
      error.replaceChildren(failure(e));
    } finally {
      button.disabled = false;
    }
  });
  form.append(error);
  return form;
}

/** Reads a JSON textarea; a mistake is reported like the API's, naming the field. */
function parseJson(text, what) {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`${what} is not valid JSON: ${e.message}`);
  }
}

// Catalog: GET/POST /admin/v1/models, PUT/DELETE /admin/v1/models/{id} — models, their offers and prices.
async function catalog() {
  if (!isOperator()) {
    operatorsOnly('Catalog');
    return;
  }
  const list = el('div', {}, el('p', { role: 'status' }, 'Loading…'));
  const editor = el('div', { 'aria-live': 'polite' });
  const add = el('button', { type: 'button', id: 'add-model', onclick: () => edit(null) }, 'Add a model');
  page('Catalog', el('p', { class: 'hint' },
    'The models every workspace can use, the offers that serve them (tried by priority) and what requests cost. '
    + 'An offer\'s prices replace its model\'s for the requests it serves. Changes apply to the next request.'),
  add, editor, list);

  /** The form that creates a model (`model` null) or replaces one's offers, prices and settings. */
  function edit(model) {
    const creating = model === null;
    const id = el('input', { required: true, maxlength: 200, autocomplete: 'off', spellcheck: 'false', placeholder: 'lovelace:my-model' });
    const ownedBy = el('input', { maxlength: 200, autocomplete: 'off', value: model?.owned_by ?? '' });
    const maxOutput = el('input', { type: 'number', min: 1, step: 1, inputmode: 'numeric', value: model?.max_output_tokens ?? '' });
    const prices = PRICE_FIELDS.map(([k, label]) => formField(`price-${k}`, label,
      el('input', { type: 'number', min: 0, step: 'any', inputmode: 'decimal', 'data-price': k, value: model?.prices?.[k] ?? '' })));
    const offers = el('textarea', { rows: 8, required: true, spellcheck: 'false' },
      JSON.stringify(creating ? [{ base_url: 'https://api.example.com/v1', upstream_model: '', credential: null }].map(offerRequest)
        : model.offers.map(offerRequest), null, 2));
    const title = creating ? 'Add a model' : `Edit ${model.id}`;
    const form = el('form', { class: 'stacked', id: 'model-form', 'aria-labelledby': 'model-form-title' },
      el('h2', { id: 'model-form-title' }, title),
      creating ? formField('model-id', 'Model id', id) : null,
      formField('model-owned-by', 'Owned by (default lattice)', ownedBy),
      formField('model-max-output', 'Most output tokens of one answer (what budgets reserve; optional)', maxOutput),
      el('fieldset', {}, el('legend', {}, 'Prices in USD (empty: not charged)'), prices),
      formField('model-offers', 'Offers (JSON: base_url or runtime, upstream_model, task, priority, capacity, kind, credential, timeout_seconds, prices, serves_responses)', offers),
      el('div', { class: 'actions' },
        el('button', { type: 'submit', id: 'model-save' }, creating ? 'Create model' : 'Save model'),
        el('button', { type: 'button', class: 'secondary', onclick: () => editor.replaceChildren() }, 'Cancel')));
    onSubmit(form, async () => {
      const chosen = {};
      for (const input of form.querySelectorAll('[data-price]')) {
        if (input.value.trim() !== '') {
          chosen[input.dataset.price] = Number(input.value);
        }
      }
      const body = { offers: parseJson(offers.value, 'Offers'), prices: chosen };
      if (ownedBy.value.trim()) {
        body.owned_by = ownedBy.value.trim();
      }
      if (maxOutput.value.trim()) {
        body.max_output_tokens = Number(maxOutput.value);
      }
      if (creating) {
        body.id = id.value.trim();
        await api('POST', '/admin/v1/models', body);
      } else {
        await api('PUT', `/admin/v1/models/${encodeURIComponent(model.id)}`, body);
      }
      editor.replaceChildren(el('p', { role: 'status' }, creating ? `Model ${body.id} created.` : `Model ${model.id} saved.`));
      await render();
    });
    editor.replaceChildren(form);
    (creating ? id : ownedBy).focus();
  }

  async function render() {
    const answer = await api('GET', '/admin/v1/models');
    if (answer.data.length === 0) {
      list.replaceChildren(el('p', { class: 'hint' }, 'No models yet.'));
      return;
    }
    list.replaceChildren(...answer.data.map((m) => {
      const headingId = `model-${m.id.replace(/[^\w-]/g, '_')}`;
      const offerRows = m.offers.map((o) => el('tr', { 'data-offer': o.id },
        el('td', { class: 'num' }, String(o.priority)), el('td', {}, o.task ?? 'every task'), el('td', {}, o.kind),
        el('td', {}, el('code', {}, o.runtime ?? o.base_url)), el('td', {}, el('code', {}, o.upstream_model)), el('td', {}, o.capacity),
        el('td', {}, o.credential ?? ''), el('td', {}, o.prices ? pricesText(o.prices) : 'the model\'s')));
      return el('section', { class: 'model', 'data-model': m.id, 'aria-labelledby': headingId },
        el('h2', { id: headingId }, el('code', {}, m.id)),
        el('p', {}, `Owned by ${m.owned_by} · added ${dateTime(m.created_at)}`,
          m.max_output_tokens ? ` · at most ${count(m.max_output_tokens)} output tokens` : ''),
        el('p', { 'data-field': 'prices' }, 'Prices: ', pricesText(m.prices)),
        table(`Offers of ${m.id}`, [{ label: 'Priority', num: true }, 'Task', 'Kind', 'Base URL or runtime', 'Upstream model', 'Capacity', 'Credential', 'Prices'],
          offerRows, 'No offers.'),
        el('div', { class: 'actions' },
          el('button', { type: 'button', class: 'secondary', 'aria-label': `Edit model ${m.id}`, onclick: () => edit(m) }, 'Edit'),
          el('button', {
            type: 'button', class: 'danger', 'aria-label': `Delete model ${m.id}`,
            onclick: async (event) => {
              if (!confirm(`Delete the model “${m.id}”? Requests for it fail from now on.`)) {
                return;
              }
              event.target.disabled = true;
              try {
                await api('DELETE', `/admin/v1/models/${encodeURIComponent(m.id)}`);
                await render();
              } catch (error) {
                list.prepend(failure(error));
              }
            },
          }, 'Delete')));
    }));
  }
  await render();
}

// Task classes: GET/POST /admin/v1/task-classes, DELETE /admin/v1/task-classes/{name} (built-ins stay).
async function taskClasses() {
  if (!isOperator()) {
    operatorsOnly('Task classes');
    return;
  }
  const list = el('div', {}, el('p', { role: 'status' }, 'Loading…'));
  const select = (options) => el('select', {}, options.map((o) => el('option', { value: o }, o)));
  const name = el('input', { required: true, maxlength: 128, autocomplete: 'off', spellcheck: 'false', pattern: '[A-Za-z0-9._\\-]+' });
  const schema = el('textarea', { rows: 8, required: true, spellcheck: 'false' },
    JSON.stringify({ type: 'object', required: ['model'], properties: { model: { type: 'string' } } }, null, 2));
  const contentType = select(['application/json', 'multipart/form-data']);
  const meteringUnit = select(['tokens', 'seconds', 'requests']);
  const upstreamPath = el('input', { autocomplete: 'off', spellcheck: 'false', placeholder: 'the name with dots as slashes' });
  const usagePath = el('input', { autocomplete: 'off', spellcheck: 'false' });
  const streams = el('input', { type: 'checkbox' });
  const done = el('p', { role: 'status' });
  const form = el('form', { class: 'stacked', id: 'task-class-form', 'aria-labelledby': 'task-class-form-title' },
    el('h2', { id: 'task-class-form-title' }, 'Add a task class'),
    formField('task-name', 'Name (letters, digits, ".", "-", "_"); served at /v1/tasks/{name}', name),
    formField('task-schema', 'Input schema (JSON Schema 2020-12)', schema),
    formField('task-content-type', 'Content type', contentType),
    formField('task-metering-unit', 'Metered in', meteringUnit),
    formField('task-upstream-path', 'Upstream path (optional)', upstreamPath),
    formField('task-usage-path', 'Usage path in the answer (optional)', usagePath),
    el('label', { class: 'check', for: 'task-streams' }, streams, 'Streams'),
    el('div', { class: 'actions' }, el('button', { type: 'submit', id: 'task-class-save' }, 'Add task class')));
  streams.id = 'task-streams';
  onSubmit(form, async () => {
    const body = {
      name: name.value.trim(), input_schema: parseJson(schema.value, 'The input schema'), content_type: contentType.value,
      metering_unit: meteringUnit.value, streams: streams.checked,
    };
    if (upstreamPath.value.trim()) {
      body.upstream_path = upstreamPath.value.trim();
    }
    if (usagePath.value.trim()) {
      body.usage_path = usagePath.value.trim();
    }
    const created = await api('POST', '/admin/v1/task-classes', body);
    name.value = '';
    done.textContent = `Task class ${created.name} added.`;
    await render();
  });
  page('Task classes', el('p', { class: 'hint' }, 'What requests may ask for, each validated against its input schema and metered in its unit. Built-in ones cannot be deleted.'),
    form, done, el('h2', {}, 'All task classes'), list);

  async function render() {
    const answer = await api('GET', '/admin/v1/task-classes');
    const rows = answer.data.map((t) => el('tr', { 'data-task-class': t.name },
      el('td', {}, el('code', {}, t.name)), el('td', {}, t.content_type), el('td', {}, el('code', {}, t.upstream_path)),
      el('td', {}, t.metering_unit), el('td', {}, t.streams ? 'yes' : 'no'), el('td', {}, t.built_in ? 'built-in' : dateTime(t.created_at)),
      el('td', {}, el('details', {}, el('summary', {}, 'Schema'), el('pre', { tabindex: '0' }, JSON.stringify(t.input_schema, null, 2)))),
      el('td', {}, t.built_in ? '' : el('button', {
        type: 'button', class: 'danger', 'aria-label': `Delete task class ${t.name}`,
        onclick: async (event) => {
          if (!confirm(`Delete the task class “${t.name}”? /v1/tasks/${t.name} stops being served.`)) {
            return;
          }
          event.target.disabled = true;
          try {
            await api('DELETE', `/admin/v1/task-classes/${encodeURIComponent(t.name)}`);
            await render();
          } catch (error) {
            list.prepend(failure(error));
          }
        },
      }, 'Delete'))));
    list.replaceChildren(table('Task classes', ['Name', 'Content type', 'Upstream path', 'Metered in', 'Streams', 'Added', 'Input schema', ''], rows, 'No task classes.'));
  }
  await render();
}
