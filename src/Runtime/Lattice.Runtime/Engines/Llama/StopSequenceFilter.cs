using System.Text;

namespace Lattice.Runtime.Engines.Llama;

/// <summary>
/// Cuts generated text at the first stop sequence. Text that could be the start of a stop sequence is held back
/// until it is known not to be, so the stop text itself is never emitted.
/// </summary>
internal sealed class StopSequenceFilter(IReadOnlyList<string> stops)
{
    private readonly StringBuilder _pending = new();

    /// <summary>True once a stop sequence was found; later input is ignored.</summary>
    public bool Stopped { get; private set; }

    /// <summary>Adds generated text; returns the part that can be emitted now.</summary>
    public string Push(string text)
    {
        if (Stopped)
        {
            return "";
        }
        if (stops.Count == 0)
        {
            return text;
        }

        _pending.Append(text);
        var pending = _pending.ToString();

        var cut = -1;
        foreach (var stop in stops)
        {
            var at = pending.IndexOf(stop, StringComparison.Ordinal);
            if (at >= 0 && (cut < 0 || at < cut))
            {
                cut = at;
            }
        }
        if (cut >= 0)
        {
            Stopped = true;
            _pending.Clear();
            return pending[..cut];
        }

        // Hold back the longest tail that is a proper prefix of some stop sequence.
        var hold = 0;
        foreach (var stop in stops)
        {
            for (var length = Math.Min(stop.Length - 1, pending.Length); length > hold; length--)
            {
                if (pending.AsSpan(pending.Length - length).SequenceEqual(stop.AsSpan(0, length)))
                {
                    hold = length;
                    break;
                }
            }
        }
        _pending.Clear().Append(pending, pending.Length - hold, hold);
        return pending[..^hold];
    }

    /// <summary>Returns the held-back text when generation ends without a stop sequence.</summary>
    public string Flush()
    {
        var rest = _pending.ToString();
        _pending.Clear();
        return rest;
    }
}
