#!/usr/bin/env node
// The Postman collection (v2.1) of the API, generated from its OpenAPI description:
//
//   node infra/postman/collection.js           writes docs/imgpipe.postman_collection.json
//   node infra/postman/collection.js --check   fails unless the committed file is what the
//                                              description generates now, and loads as v2.1
//
// openapi-to-postmanv2 gives every item a random id and fills example answers with random
// values; both are dropped (ids are optional in v2.1; the saved examples keep their status,
// name and header names), so the same description always gives the same bytes. The base URL and the
// API key are collection variables; every request inherits the collection's bearer auth, except
// the two open routes.
'use strict';

const fs = require('fs');
const path = require('path');
const { convert } = require('openapi-to-postmanv2');
const { Collection } = require('postman-collection');

const root = path.resolve(__dirname, '../..');
const descriptionPath = path.join(root, 'docs/openapi.json');
const collectionPath = path.join(root, 'docs/imgpipe.postman_collection.json');
const V21 = 'https://schema.getpostman.com/json/collection/v2.1.0/collection.json';

const VARIABLES = [
  {
    key: 'baseUrl',
    value: 'http://<api id>.execute-api.localhost:4599',
    type: 'string',
    description: 'The API: the stack output ApiUrl on AWS, or the address `make run` prints locally.',
  },
  {
    key: 'apiKey',
    value: '',
    type: 'secret',
    description: 'An API key, ik_...: `make up` prints one; imgpipe-admin keys create makes more.',
  },
];

function withoutRandomParts(value) {
  if (Array.isArray(value)) return value.map(withoutRandomParts);
  if (value === null || typeof value !== 'object') return value;
  const kept = {};
  for (const [key, inner] of Object.entries(value)) {
    if (key === 'id' || key === '_postman_id') continue;
    kept[key] = withoutRandomParts(inner);
  }
  return kept;
}

function requestsOf(items) {
  return items.flatMap((item) => (item.item ? requestsOf(item.item) : [item]));
}

function generate() {
  const description = fs.readFileSync(descriptionPath, 'utf8');
  const options = { folderStrategy: 'Tags', parametersResolution: 'Schema', schemaFaker: false };
  return new Promise((resolve, reject) => {
    convert({ type: 'string', data: description }, options, (error, conversion) => {
      if (error) return reject(error);
      if (!conversion.result) return reject(new Error(`openapi-to-postmanv2: ${conversion.reason}`));
      const collection = withoutRandomParts(conversion.output[0].data);
      for (const request of requestsOf(collection.item)) {
        for (const example of request.response || []) {
          delete example.body;
          for (const header of example.header || []) {
            if (header.key.toLowerCase() !== 'content-type') header.value = `<${header.key}>`;
          }
        }
      }
      collection.variable = VARIABLES;
      collection.auth = { type: 'bearer', bearer: [{ key: 'token', value: '{{apiKey}}', type: 'string' }] };
      resolve(`${JSON.stringify(collection, null, 2)}\n`);
    });
  });
}

// What Postman needs to import it and what we promise: the v2.1 schema, both variables, the
// bearer auth, one request per described operation, each on {{baseUrl}}; and the Postman
// collection SDK reads it back without losing a request.
function problemsOf(text) {
  const problems = [];
  const json = JSON.parse(text);
  if (json.info?.schema !== V21) problems.push(`info.schema is not ${V21}`);
  if (!json.info?.name) problems.push('info.name is missing');
  const variables = (json.variable || []).map((variable) => variable.key);
  for (const key of ['baseUrl', 'apiKey']) {
    if (!variables.includes(key)) problems.push(`no collection variable ${key}`);
  }
  if (json.auth?.type !== 'bearer' || json.auth.bearer?.[0]?.value !== '{{apiKey}}') {
    problems.push('the collection auth is not bearer {{apiKey}}');
  }
  const description = JSON.parse(fs.readFileSync(descriptionPath, 'utf8'));
  const operations = Object.values(description.paths).flatMap((methods) => Object.keys(methods));
  const requests = requestsOf(json.item || []);
  if (requests.length !== operations.length) {
    problems.push(`${requests.length} requests for ${operations.length} described operations`);
  }
  for (const item of requests) {
    const host = item.request?.url?.host;
    if (!item.request?.method || !Array.isArray(host) || host[0] !== '{{baseUrl}}') {
      problems.push(`request ${item.name}: no method, or not on {{baseUrl}}`);
    }
  }
  const loaded = new Collection(json);
  let read = 0;
  loaded.forEachItem(() => { read += 1; });
  if (read !== requests.length) problems.push(`the Postman SDK read ${read} requests of ${requests.length}`);
  return problems;
}

async function main() {
  const generated = await generate();
  const check = process.argv.includes('--check');
  if (!check) fs.writeFileSync(collectionPath, generated);
  const committed = fs.existsSync(collectionPath) ? fs.readFileSync(collectionPath, 'utf8') : '';
  const relative = path.relative(root, collectionPath);
  const problems = committed === generated ? problemsOf(committed)
    : [`${relative} is not what docs/openapi.json generates: run \`make postman\` and commit it`];
  for (const problem of problems) console.error(`${relative}: ${problem}`);
  if (problems.length) process.exit(1);
  console.log(`${relative}: current with docs/openapi.json, a v2.1 collection the Postman SDK loads`);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
