import { Command } from 'commander';
import { COMMANDS, commandOf } from './commands/index.js';

const program = new Command('edgetune')
  .description('Fine-tune MobileNetV2 on a folder of labelled photos and serve it as an HTTPS API.')
  .showHelpAfterError()
  // `train [options] <data>` in the list, whether the command was loaded or only described.
  .configureHelp({ subcommandTerm: (cmd) => `${cmd.name()} ${cmd.usage()}` });

// Only the command being run is imported and registered in full (its options, its --help); the
// others are listed from their descriptors, so `edgetune --help` loads no command module.
const wanted = commandOf(process.argv.slice(2));
for (const [name, c] of Object.entries(COMMANDS)) {
  if (name === wanted) (await c.load()).register(program);
  else program.command(name).usage(c.usage).description(c.description);
}

await program.parseAsync(process.argv);
