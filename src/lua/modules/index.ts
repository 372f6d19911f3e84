import type { LuaModuleFactory } from './module-types';
import { createNetModule } from './net';
import { createDbModule } from './db';
import { createSutModule } from './sut';
import { createSyncModule } from './sync';
import { createShapeModule } from './shape';

export * from './module-types';

const factories = new Map<string, LuaModuleFactory>();

export function registerLuaModule(name: string, factory: LuaModuleFactory): void {
  factories.set(name, factory);
}

export function getLuaModule(name: string): LuaModuleFactory | undefined {
  return factories.get(name);
}

export function luaModuleNames(): string[] {
  return [...factories.keys()];
}

registerLuaModule('net', createNetModule);
registerLuaModule('db', createDbModule);
registerLuaModule('sut', createSutModule);
registerLuaModule('sync', createSyncModule);
registerLuaModule('shape', createShapeModule);
registerLuaModule('postman', (ctx) => (require('./postman') as typeof import('./postman')).createPostmanModule(ctx));
