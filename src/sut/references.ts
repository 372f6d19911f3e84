import type { AppSpec } from '../spec/app-spec';
import { resolveReferences } from '../spec/references';
import { proxyUrl } from '../shape/proxy-fleet';
import { postgresUrl } from './endpoints';
import { sutErrors } from './sut-errors';

export interface Address {
  host: string;
  port: number;
}

/**
 * Where a backend's services find each other: each driver supplies its view
 * (local: 127.0.0.1 and a replica's port; docker: the network alias and the
 * declared port; either: the dependents' shaping proxy when there is one).
 */
export interface AddressView {
  /** a service's address on `port` ('main' or a named port); undefined while none of its replicas runs */
  service(name: string, port: string): Address | undefined;
  /** a database's address; undefined while it is not running */
  database(name: string): Address | undefined;
}

/** `${name.field}` of `spec` as seen through `view`: the same fields, text and errors on every backend. */
export function resolveReference(spec: AppSpec, view: AddressView, name: string, field: string): string {
  const db = spec.databases.find((d) => d.name === name);
  if (db) {
    const c = db.credentials;
    if (field === 'name') return name;
    if (field === 'user') return c.user;
    if (field === 'password') return c.password;
    if (field === 'dbname') return c.dbname;
    if (field !== 'url' && field !== 'host' && field !== 'port') throw sutErrors.unknownReference(name, field, `databases have no field "${field}"`);
    const a = view.database(name);
    if (!a) throw sutErrors.databaseNotRunning(name);
    if (field === 'url') return postgresUrl(c, a.host, a.port);
    return field === 'host' ? a.host : String(a.port);
  }
  const svc = spec.services.find((s) => s.name === name);
  if (!svc) throw sutErrors.unknownReference(name, field, `no service or database named "${name}"`);
  if (field === 'name') return name;
  const port = field === 'url' || field === 'host' || field === 'port' ? 'main' : field.startsWith('ports.') ? field.slice(6) : undefined;
  if (port === undefined || (port !== 'main' && svc.ports[port] === undefined)) {
    throw sutErrors.unknownReference(name, field, `service ${name} has no field "${field}"`);
  }
  const a = view.service(name, port);
  if (!a) throw sutErrors.referenceNotRunning(name, field);
  // a service whose main port serves TLS (`tls: true`) is reached as https
  if (field === 'url') return proxyUrl(a, svc.tls ? 'https' : 'http');
  return field === 'host' ? a.host : String(a.port);
}

/** Every `${name.field}` in `value` resolved through `view`. */
export function resolveValue(spec: AppSpec, view: AddressView, value: string): string {
  return resolveReferences(value, (name, field) => resolveReference(spec, view, name, field));
}
