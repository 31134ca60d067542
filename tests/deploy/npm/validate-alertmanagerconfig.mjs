// Validates AlertmanagerConfig resources (a JSON list on stdin) with @kubernetes-models/prometheus-operator, whose
// validators are compiled from the prometheus-operator CRD's schema (types, required fields, enums, duration
// patterns). Prints a JSON list of errors. Usage: node validate-alertmanagerconfig.mjs NODE_MODULES < resources.json
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const model = `${process.argv[2]}/@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1alpha1/AlertmanagerConfig.js`;
const { AlertmanagerConfig } = await import(pathToFileURL(model).href);
const errors = [];
for (const resource of JSON.parse(readFileSync(0, "utf8"))) {
  try {
    new AlertmanagerConfig(resource).validate();
  } catch (error) {
    errors.push(`${resource.metadata?.name}: ${error.message}`);
  }
}
console.log(JSON.stringify(errors));
