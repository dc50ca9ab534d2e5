using System.Collections;
using System.Text;
using Lattice.Gateway.Hosting;

namespace Lattice.Gateway.Tests.Hosting;

public sealed class Gen0BudgetTests
{
    [Fact]
    public void The_budget_is_32_MiB_written_the_way_the_runtime_reads_it()
    {
        Assert.Equal("DOTNET_GCgen0size", Gen0Budget.Variable);
        Assert.Equal("0x2000000", Gen0Budget.Value);
    }

    [Fact]
    public void The_command_line_comes_back_argument_for_argument()
    {
        var cmdline = Encoding.UTF8.GetBytes("dotnet\0/opt/lattice/lattice.dll\0up\0--port\0\0naïve arg\0");

        Assert.Equal(["dotnet", "/opt/lattice/lattice.dll", "up", "--port", "", "naïve arg"], Gen0Budget.ParseCommandLine(cmdline));
        Assert.Empty(Gen0Budget.ParseCommandLine([]));
    }

    [Theory]
    [InlineData("DOTNET_GCgen0size", true)]
    [InlineData("COMPlus_GCgen0size", true)]
    [InlineData("DOTNET_gcServer", false)]
    public void A_budget_the_operator_set_is_left_alone(string variable, bool configured)
    {
        IDictionary environment = new Hashtable { ["PATH"] = "/usr/bin", [variable] = "0" };

        Assert.Equal(configured, Gen0Budget.IsConfigured(environment));
    }
}
