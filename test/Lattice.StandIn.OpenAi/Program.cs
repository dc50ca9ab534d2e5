using Lattice.StandIn.OpenAi;

StandInServer.Build(args).Run();
