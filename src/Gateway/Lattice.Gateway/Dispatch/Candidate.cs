using Lattice.Gateway.Metering;

namespace Lattice.Gateway.Dispatch;

/// <summary>
/// One target routing found for a request, in the order the failover loop tries them: a personal runtime's link, a
/// hosted runtime's link or an upstream offer. <see cref="Target"/> knows how to send the request there.
/// </summary>
/// <param name="ServedBy">What the usage record names: <see cref="ServedByKinds"/>.</param>
/// <param name="Id">The offer id or the runtime id.</param>
/// <param name="Capacity"><see cref="CapacityClasses"/>, which decides the price.</param>
/// <param name="TargetModel">The model name the target knows (the upstream's model, or the runtime's).</param>
/// <param name="Prices">What a request served here costs.</param>
public sealed record Candidate(
    string ServedBy,
    string Id,
    string Capacity,
    string TargetModel,
    Prices Prices,
    IDispatchTarget Target,
    object? State = null);

/// <summary>What routing decided: the candidates in order, or why there are none.</summary>
public readonly record struct RoutePlan(IReadOnlyList<Candidate> Candidates, OpenAi.GatewayError Error)
{
    /// <summary>The catalog model's most output tokens per answer, when known.</summary>
    public int? MaxOutputTokens { get; init; }

    public bool Found => Candidates is { Count: > 0 };

    public static RoutePlan Fail(OpenAi.GatewayError error) => new([], error);
}
