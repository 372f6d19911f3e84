/**
 * A result that settles once, delivered through callbacks. The load driver
 * (vu-host.ts) subscribes directly, so a response resumes its VU inside the
 * socket's read callback: no promise reactions, no microtask hops. Everything
 * else may `await` it (it is a thenable), so module code that returns one
 * works unchanged in scenarios.
 */
export class Deferred<T> implements PromiseLike<T> {
  private state: 0 | 1 | 2 = 0;
  private value: unknown;
  private onOk: ((v: T) => void) | undefined;
  private onErr: ((e: unknown) => void) | undefined;

  resolve(v: T): void {
    if (this.state !== 0) return;
    this.state = 1;
    this.value = v;
    const f = this.onOk;
    this.onOk = this.onErr = undefined;
    f?.(v);
  }

  reject(e: unknown): void {
    if (this.state !== 0) return;
    this.state = 2;
    this.value = e;
    const f = this.onErr;
    this.onOk = this.onErr = undefined;
    f?.(e);
  }

  /** One subscriber; called at once when already settled. */
  subscribe(onOk: (v: T) => void, onErr: (e: unknown) => void): void {
    if (this.state === 1) onOk(this.value as T);
    else if (this.state === 2) onErr(this.value);
    else {
      this.onOk = onOk;
      this.onErr = onErr;
    }
  }

  then<A = T, B = never>(onfulfilled?: ((v: T) => A | PromiseLike<A>) | null, onrejected?: ((e: unknown) => B | PromiseLike<B>) | null): Promise<A | B> {
    return new Promise<T>((res, rej) => this.subscribe(res, rej)).then(onfulfilled, onrejected);
  }
}
