export function postmanToLua(_opts: { collection: string; environment?: string }): { source: string } {
  throw new Error('not yet');
}
