namespace Lattice.Gateway.Billing.Idempotency;

/// <summary>
/// Set on a request that carries an <c>Idempotency-Key</c>. Dispatch marks it once admission lets the request through:
/// only then has the request begun executing, and only then is its answer kept for replay (Stripe's rule — a request
/// refused by validation, authentication, a rate limit or a budget keeps nothing, so a retry runs afresh).
/// </summary>
public sealed class IdempotencyFeature
{
    public bool Executing { get; private set; }

    public void MarkExecuting() => Executing = true;
}
