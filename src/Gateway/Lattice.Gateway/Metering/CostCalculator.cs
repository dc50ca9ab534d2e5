using System.Globalization;
using Lattice.Gateway.Catalog;
using Lattice.Protocol.Metering;

namespace Lattice.Gateway.Metering;

/// <summary>
/// What a request costs, in pico-USD (10⁻¹² USD). Computed in <see cref="decimal"/> and rounded once, half to even,
/// so a record's cost is exact to the pico-dollar and a sum of records is a plain integer sum without drift.
/// </summary>
public static class CostCalculator
{
    public const long PicoPerUsd = 1_000_000_000_000;

    private const decimal PicoPerUsdDecimal = PicoPerUsd;

    /// <summary>Pico-USD per USD-per-million-tokens and token: 10¹² / 10⁶.</summary>
    private const decimal PicoPerMTokPrice = 1_000_000m;

    private const decimal MillisecondsPerMinute = 60_000m;

    /// <summary>
    /// The cost of <paramref name="usage"/> at <paramref name="prices"/> for a task metered in <paramref name="meteringUnit"/>
    /// (<see cref="MeteringUnits"/>):
    /// <list type="bullet">
    /// <item><c>tokens</c>: (prompt − cached) × input + cached × (cached input, else input) + completion × output, per million;</item>
    /// <item><c>seconds</c>: audio milliseconds × the per-minute price / 60,000;</item>
    /// <item><c>requests</c>: nothing but the per-request price,</item>
    /// </list>
    /// plus the per-request price in every case. A missing price is zero; negative counts count as zero.
    /// </summary>
    public static long PicoUsd(Prices prices, Usage usage, string meteringUnit)
    {
        ArgumentNullException.ThrowIfNull(prices);
        try
        {
            var pico = (prices.PerRequest ?? 0m) * PicoPerUsdDecimal;
            switch (meteringUnit)
            {
                case MeteringUnits.Tokens:
                    var prompt = Math.Max(usage.PromptTokens, 0);
                    var cached = Math.Clamp(usage.CachedTokens, 0, prompt);
                    var completion = Math.Max(usage.CompletionTokens, 0);
                    var input = prices.InputPerMTok ?? 0m;
                    var tokens = (prompt - cached) * input
                        + cached * (prices.CachedInputPerMTok ?? input)
                        + completion * (prices.OutputPerMTok ?? 0m);
                    pico += tokens * PicoPerMTokPrice;
                    break;
                case MeteringUnits.Seconds:
                    // One division, last: the quotient carries 28 significant digits, so the single rounding below decides.
                    pico += Math.Max(usage.AudioMilliseconds, 0) * (prices.AudioPerMinute ?? 0m) * PicoPerUsdDecimal / MillisecondsPerMinute;
                    break;
            }
            var rounded = decimal.Round(pico, 0, MidpointRounding.ToEven);
            return rounded >= long.MaxValue ? long.MaxValue : (long)rounded;
        }
        catch (OverflowException)
        {
            // Only absurd counts get here (prices are capped at PricesJson.MaxPrice): more than 9.2 million USD for
            // one request is not a real request, and saturating keeps a sum from wrapping to a negative charge.
            return long.MaxValue;
        }
    }

    /// <summary>
    /// Pico-USD as a USD decimal string with as many decimals as needed and no more: 1500000000 → <c>"0.0015"</c>,
    /// 2000000000000 → <c>"2"</c>, 0 → <c>"0"</c>.
    /// </summary>
    public static string FormatUsd(long picoUsd)
    {
        if (picoUsd == long.MinValue)
        {
            // −long.MinValue does not exist; decimal has room for it.
            return (picoUsd / PicoPerUsdDecimal).ToString(CultureInfo.InvariantCulture);
        }
        var negative = picoUsd < 0;
        var magnitude = Math.Abs(picoUsd);
        var whole = magnitude / PicoPerUsd;
        var fraction = magnitude % PicoPerUsd;
        var text = whole.ToString(CultureInfo.InvariantCulture);
        if (fraction != 0)
        {
            text += "." + fraction.ToString("D12", CultureInfo.InvariantCulture).TrimEnd('0');
        }
        return negative ? "-" + text : text;
    }
}
