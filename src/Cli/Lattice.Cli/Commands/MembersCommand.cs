using System.CommandLine;
using System.Text.Json.Nodes;

namespace Lattice.Cli.Commands;

/// <summary><c>lattice members list|invite|remove</c>: who belongs to the workspace, through the admin API.</summary>
internal static class MembersCommand
{
    public static Command Create()
    {
        var admin = new AdminOptions();

        var list = new Command("list", "List the workspace's members and its open invitations.");
        list.SetAction(async (parse, ct) =>
        {
            var target = admin.Resolve(parse);
            if (target is null)
            {
                return 2;
            }
            var members = await target.SendAsync(HttpMethod.Get, $"/admin/v1/workspaces/{target.Workspace}/members", null, ct);
            var invitations = members is null ? null : await target.SendAsync(HttpMethod.Get, $"/admin/v1/workspaces/{target.Workspace}/invitations", null, ct);
            if (members is null || invitations is null)
            {
                return 1;
            }
            Console.WriteLine($"{"USER ID",-26} {"ROLE",-8} E-MAIL");
            foreach (var member in members["data"]!.AsArray())
            {
                Console.WriteLine($"{member!["user_id"],-26} {member["role"],-8} {member["email"]}");
            }
            var open = invitations["data"]!.AsArray().Where(i => i!["accepted_at"] is null && i["revoked_at"] is null).ToList();
            if (open.Count > 0)
            {
                Console.WriteLine();
                Console.WriteLine($"{"INVITATION",-26} {"ROLE",-8} {"E-MAIL",-32} EXPIRES");
                foreach (var invitation in open)
                {
                    var expires = DateTimeOffset.FromUnixTimeSeconds(invitation!["expires_at"]!.GetValue<long>()).ToString("yyyy-MM-dd HH:mm 'UTC'", System.Globalization.CultureInfo.InvariantCulture);
                    Console.WriteLine($"{invitation["id"],-26} {invitation["role"],-8} {invitation["email"],-32} {expires}");
                }
            }
            return 0;
        });

        var email = new Argument<string>("email") { Description = "The e-mail address to invite." };
        var role = new Option<string>("--role") { Description = "member (default) or owner.", DefaultValueFactory = _ => "member" };
        var invite = new Command("invite", "Invite someone by e-mail; prints the one-time link to pass on (valid 7 days).") { email, role };
        invite.SetAction((parse, ct) => admin.SendAsync(parse, HttpMethod.Post, t => $"/admin/v1/workspaces/{t.Workspace}/invitations",
            new JsonObject { ["email"] = parse.GetValue(email), ["role"] = parse.GetValue(role) }, result =>
            {
                Console.WriteLine($"Invited {result["email"]} as {result["role"]} ({result["id"]}).");
                Console.WriteLine($"Send them this link (it works once, until {DateTimeOffset.FromUnixTimeSeconds(result["expires_at"]!.GetValue<long>()):yyyy-MM-dd}):");
                Console.WriteLine(result["accept_url"]);
            }, ct));

        var userId = new Argument<string>("user-id") { Description = "The member's user id (usr_…)." };
        var remove = new Command("remove", "Remove a member; every grant they made in the workspace, and every personal runtime they own there, is revoked at once.") { userId };
        remove.SetAction((parse, ct) => admin.SendAsync(parse, HttpMethod.Delete, t => $"/admin/v1/workspaces/{t.Workspace}/members/{Uri.EscapeDataString(parse.GetValue(userId)!)}", null,
            _ => Console.WriteLine($"Removed {parse.GetValue(userId)}; the grants they made here and their personal runtimes are revoked."), ct));

        return admin.Group("members", "Manage the workspace's members and invitations.", list, invite, remove);
    }
}
