namespace Lattice.Client;

/// <summary>
/// The client's <see cref="CapacityPolicy.PrivateOnly"/> refused a call before sending it: its model id is not one of
/// the caller's personal runtimes, so hosted or marketplace capacity could have served it.
/// </summary>
public sealed class PrivateOnlyViolationException : LatticeException
{
    /// <summary>The call named <paramref name="model"/>.</summary>
    public PrivateOnlyViolationException(string model)
        : base(new LatticeError(0, LatticeErrorCodes.PrivateOnly, null,
            $"The model '{model}' is not a personal runtime (lattice:personal:…), and this client is private-only: it never uses hosted or marketplace capacity."))
    {
        Model = model;
    }

    /// <summary>The model id the call named.</summary>
    public string Model { get; }
}

/// <summary>No personal runtime of the caller is reachable and serves what was asked (<see cref="LatticeRuntimes.ChooseAsync"/>): ask the user to start or select one.</summary>
public sealed class NoReachableRuntimeException : LatticeException
{
    /// <summary>None serves <paramref name="task"/> (with <paramref name="model"/>, when given).</summary>
    public NoReachableRuntimeException(string task, string? model)
        : base(new LatticeError(0, LatticeErrorCodes.NoReachableRuntime, null,
            $"No reachable personal runtime serves '{task}'{(model is null ? "" : $" with the model '{model}'")}."))
    {
    }
}
