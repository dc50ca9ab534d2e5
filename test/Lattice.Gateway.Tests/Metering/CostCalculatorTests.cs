using System.Numerics;
using Lattice.Gateway.Catalog;
using Lattice.Gateway.Metering;
using Lattice.Protocol.Metering;

namespace Lattice.Gateway.Tests.Metering;

public sealed class CostCalculatorTests
{
    private static readonly Prices Chat = new() { InputPerMTok = 2.5m, CachedInputPerMTok = 1.25m, OutputPerMTok = 10m, PerRequest = 0.001m };

    [Fact]
    public void Tokens_cost_uncached_cached_and_output_tokens_per_million_plus_the_request()
    {
        // (600 × 2.5 + 400 × 1.25 + 500 × 10) / 10⁶ USD = 0.007 USD, plus 0.001 USD per request.
        var usage = new Usage(PromptTokens: 1000, CompletionTokens: 500, TotalTokens: 1500, CachedTokens: 400);
        Assert.Equal(8_000_000_000, CostCalculator.PicoUsd(Chat, usage, MeteringUnits.Tokens));
    }

    [Fact]
    public void Cached_tokens_cost_the_input_price_when_there_is_no_cached_price()
    {
        var prices = Chat with { CachedInputPerMTok = null, PerRequest = null };
        var usage = new Usage(PromptTokens: 1000, CompletionTokens: 0, CachedTokens: 400);
        Assert.Equal(2_500_000_000, CostCalculator.PicoUsd(prices, usage, MeteringUnits.Tokens));
    }

    [Fact]
    public void Cached_tokens_beyond_the_prompt_are_not_credited()
    {
        var prices = new Prices { InputPerMTok = 1m, CachedInputPerMTok = 0m };
        // Only the prompt's 10 tokens can be cached; nothing goes negative.
        Assert.Equal(0, CostCalculator.PicoUsd(prices, new Usage(PromptTokens: 10, CachedTokens: 50), MeteringUnits.Tokens));
        Assert.Equal(0, CostCalculator.PicoUsd(prices, new Usage(PromptTokens: -5, CompletionTokens: -5), MeteringUnits.Tokens));
    }

    [Fact]
    public void Seconds_cost_audio_milliseconds_at_the_per_minute_price()
    {
        var prices = new Prices { AudioPerMinute = 0.006m, InputPerMTok = 99m };
        // 90.5 s at 0.006 USD/min = 0.00905 USD; tokens are not what this task is metered in.
        var usage = new Usage(PromptTokens: 1000, AudioMilliseconds: 90_500);
        Assert.Equal(9_050_000_000, CostCalculator.PicoUsd(prices, usage, MeteringUnits.Seconds));
        // 1 ms at 0.000001 USD/min = 16.67 pico-USD → 17.
        Assert.Equal(17, CostCalculator.PicoUsd(new Prices { AudioPerMinute = 0.000001m }, new Usage(AudioMilliseconds: 1), MeteringUnits.Seconds));
    }

    [Fact]
    public void Requests_cost_only_the_per_request_price()
    {
        var usage = new Usage(PromptTokens: 1_000_000, CompletionTokens: 1_000_000, AudioMilliseconds: 60_000);
        Assert.Equal(1_000_000_000, CostCalculator.PicoUsd(Chat, usage, MeteringUnits.Requests));
        Assert.Equal(0, CostCalculator.PicoUsd(Prices.Free, usage, MeteringUnits.Requests));
    }

    [Theory]
    [InlineData(1, 0)]   // 0.5 → 0
    [InlineData(3, 2)]   // 1.5 → 2
    [InlineData(5, 2)]   // 2.5 → 2
    [InlineData(7, 4)]   // 3.5 → 4
    public void Rounding_is_once_and_half_to_even(long tokens, long expected)
    {
        // A price finer than the admin API allows, so the exact cost falls on half a pico-USD.
        var prices = new Prices { InputPerMTok = 0.0000005m };
        Assert.Equal(expected, CostCalculator.PicoUsd(prices, new Usage(PromptTokens: tokens), MeteringUnits.Tokens));
    }

    [Fact]
    public void Absurd_usage_saturates_instead_of_wrapping()
    {
        var prices = new Prices { OutputPerMTok = PricesJson.MaxPrice };
        Assert.Equal(long.MaxValue, CostCalculator.PicoUsd(prices, new Usage(CompletionTokens: long.MaxValue), MeteringUnits.Tokens));
    }

    [Theory]
    [InlineData(0, "0")]
    [InlineData(1, "0.000000000001")]
    [InlineData(1_500_000_000, "0.0015")]
    [InlineData(2_000_000_000_000, "2")]
    [InlineData(1_234_567_890_123_456, "1234.567890123456")]
    [InlineData(10_000_000_000_000, "10")]
    [InlineData(-500_000_000_000, "-0.5")]
    [InlineData(long.MaxValue, "9223372.036854775807")]
    [InlineData(long.MinValue, "-9223372.036854775808")]
    public void Pico_usd_formats_as_usd_with_only_the_decimals_needed(long pico, string expected)
    {
        Assert.Equal(expected, CostCalculator.FormatUsd(pico));
    }

    /// <summary>
    /// A million records, token- and audio-metered, costed one by one and summed as integers, against the same figure
    /// computed independently in exact rational arithmetic (BigInteger): the sum is exact, whatever the count.
    /// </summary>
    [Fact]
    public void A_million_records_sum_without_drift()
    {
        var random = new Random(20261203);
        // Prices as integer micro-USD, at the admin API's finest grain (6 decimals).
        long inputMicro = 2_500_001, cachedMicro = 1_250_003, outputMicro = 9_999_997, audioMicro = 6_007, requestMicro = 13;
        var prices = new Prices
        {
            InputPerMTok = inputMicro / 1_000_000m,
            CachedInputPerMTok = cachedMicro / 1_000_000m,
            OutputPerMTok = outputMicro / 1_000_000m,
            AudioPerMinute = audioMicro / 1_000_000m,
            PerRequest = requestMicro / 1_000_000m,
        };

        long sum = 0;
        var exact = BigInteger.Zero;
        for (var i = 0; i < 1_000_000; i++)
        {
            var audio = i % 3 == 0;
            var prompt = random.Next(0, 200_000);
            var cached = random.Next(0, prompt + 1);
            var completion = random.Next(0, 50_000);
            var ms = random.Next(0, 3_600_000);
            var usage = new Usage(prompt, completion, prompt + completion, cached, ms);
            sum += CostCalculator.PicoUsd(prices, usage, audio ? MeteringUnits.Seconds : MeteringUnits.Tokens);

            // Pico-USD: a price in micro-USD per million tokens is micro × 10⁶ / 10⁶ pico-USD per token; per minute, it is
            // micro × 10⁶ / 60,000 per millisecond; per request, micro × 10⁶.
            var request = (BigInteger)requestMicro * 1_000_000;
            if (audio)
            {
                exact += request + RoundHalfEven((BigInteger)ms * audioMicro * 1_000_000, 60_000);
            }
            else
            {
                exact += request + (BigInteger)(prompt - cached) * inputMicro + (BigInteger)cached * cachedMicro + (BigInteger)completion * outputMicro;
            }
        }
        Assert.Equal(exact, (BigInteger)sum);
        Assert.Equal(CostCalculator.FormatUsd((long)exact), CostCalculator.FormatUsd(sum));
    }

    private static BigInteger RoundHalfEven(BigInteger numerator, BigInteger denominator)
    {
        var quotient = BigInteger.DivRem(numerator, denominator, out var remainder);
        var twice = remainder * 2;
        return twice > denominator || (twice == denominator && !quotient.IsEven) ? quotient + 1 : quotient;
    }
}
