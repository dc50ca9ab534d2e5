using System.Net;
using Lattice.Gateway.Auth;
using Lattice.Gateway.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;

namespace Lattice.Gateway.Tests.Identity;

/// <summary>The failed-authentication limiter's table: sources, windows, its bound, and per-account backoff.</summary>
public sealed class FailedAuthLimiterTests
{
    private readonly FakeTimeProvider _clock = new(new DateTimeOffset(2026, 12, 3, 12, 0, 0, TimeSpan.Zero));

    private FailedAuthLimiter Limiter(int perMinute = 3) => new(Options.Create(new GatewayOptions { FailedAuthPerMinute = perMinute }), _clock);

    private static DefaultHttpContext From(string address) => new() { Connection = { RemoteIpAddress = IPAddress.Parse(address) } };

    [Theory]
    [InlineData("192.0.2.10", "192.0.2.10")]
    [InlineData("::ffff:192.0.2.10", "192.0.2.10")]
    [InlineData("2001:db8:aa:bb:1:2:3:4", "2001:db8:aa:bb::")]
    [InlineData("2001:db8:aa:bb::", "2001:db8:aa:bb::")]
    [InlineData("::1", "::")]
    public void An_address_is_counted_as_its_IPv4_address_or_its_IPv6_64(string address, string source) =>
        Assert.Equal(IPAddress.Parse(source), SourceWindow.SourceOf(IPAddress.Parse(address)));

    [Fact]
    public void The_limit_holds_for_one_window_and_the_next_starts_empty()
    {
        var limiter = Limiter();
        for (var i = 0; i < 3; i++)
        {
            Assert.True(limiter.RecordFailure(From("192.0.2.1")));
        }
        Assert.False(limiter.RecordFailure(From("192.0.2.1")));
        Assert.True(limiter.RecordFailure(From("192.0.2.2")));
        Assert.Equal(2, limiter.TrackedSources);

        _clock.Advance(TimeSpan.FromMinutes(1));
        Assert.Equal(0, limiter.TrackedSources);
        Assert.True(limiter.RecordFailure(From("192.0.2.1")));
    }

    [Fact]
    public void A_flood_of_addresses_is_held_in_a_bounded_table()
    {
        var limiter = Limiter(perMinute: 1_000);
        // Three times the bound, from distinct addresses in distinct /24s past the first 65,536.
        for (var i = 0; i < 3 * FailedAuthLimiter.MaxSources; i++)
        {
            var context = From(new IPAddress(BitConverter.GetBytes(0x0A000000 + i * 7).Reverse().ToArray()).ToString());
            limiter.RecordFailure(context);
        }
        Assert.InRange(limiter.TrackedSources, FailedAuthLimiter.MaxSources, 2 * FailedAuthLimiter.MaxSources + 1);
        _clock.Advance(TimeSpan.FromMinutes(1));
        Assert.Equal(0, limiter.TrackedSources);
    }

    [Fact]
    public void Past_the_bound_new_addresses_share_their_neighbours_count()
    {
        var limiter = Limiter();
        for (var i = 0; i < FailedAuthLimiter.MaxSources; i++)
        {
            limiter.RecordFailure(From(new IPAddress(BitConverter.GetBytes(0x0A000000 + i).Reverse().ToArray()).ToString()));
        }
        // 198.51.100.1 … .4 are new once the table is full: counted together as 198.51.100.0/24.
        for (var i = 1; i <= 3; i++)
        {
            Assert.True(limiter.RecordFailure(From($"198.51.100.{i}")));
        }
        Assert.False(limiter.RecordFailure(From("198.51.100.4")));
    }

    [Fact]
    public void An_accounts_backoff_starts_after_five_failures_doubles_and_ends_with_a_success()
    {
        var limiter = Limiter();
        for (var i = 0; i < FailedAuthLimiter.FreeAccountFailures - 1; i++)
        {
            limiter.RecordAccountFailure("ada@example.com");
            Assert.Equal(TimeSpan.Zero, limiter.AccountBackoff("ada@example.com"));
        }
        limiter.RecordAccountFailure("ADA@example.com");
        Assert.Equal(TimeSpan.FromSeconds(1), limiter.AccountBackoff("ada@example.com"));
        _clock.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal(TimeSpan.Zero, limiter.AccountBackoff("ada@example.com"));
        limiter.RecordAccountFailure("ada@example.com");
        Assert.Equal(TimeSpan.FromSeconds(2), limiter.AccountBackoff("ada@example.com"));
        for (var i = 0; i < 30; i++)
        {
            limiter.RecordAccountFailure("ada@example.com");
        }
        Assert.Equal(FailedAuthLimiter.MaxAccountBackoff, limiter.AccountBackoff("ada@example.com"));
        Assert.Equal(TimeSpan.Zero, limiter.AccountBackoff("bob@example.com"));

        limiter.RecordAccountSuccess("ada@example.com");
        Assert.Equal(TimeSpan.Zero, limiter.AccountBackoff("ada@example.com"));
    }

    [Fact]
    public void The_account_table_is_bounded_and_forgets_backoffs_long_over()
    {
        var limiter = Limiter();
        for (var i = 0; i < FailedAuthLimiter.MaxSources; i++)
        {
            for (var j = 0; j < FailedAuthLimiter.FreeAccountFailures; j++)
            {
                limiter.RecordAccountFailure($"user{i}@example.com");
            }
        }
        Assert.Equal(TimeSpan.FromSeconds(1), limiter.AccountBackoff("user0@example.com"));
        // Full of accounts in backoff: a new one is left to the per-source limit.
        for (var i = 0; i < FailedAuthLimiter.FreeAccountFailures; i++)
        {
            limiter.RecordAccountFailure("late@example.com");
        }
        Assert.Equal(TimeSpan.Zero, limiter.AccountBackoff("late@example.com"));

        // Once their backoffs are long over, the full table is swept and the new account is counted again.
        _clock.Advance(FailedAuthLimiter.MaxAccountBackoff + TimeSpan.FromMinutes(1));
        for (var i = 0; i < FailedAuthLimiter.FreeAccountFailures; i++)
        {
            limiter.RecordAccountFailure("late@example.com");
        }
        Assert.Equal(TimeSpan.FromSeconds(1), limiter.AccountBackoff("late@example.com"));
    }
}
